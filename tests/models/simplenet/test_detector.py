"""SimpleNet: the loss by hand, standardised features, the discriminator learns, resume, bad settings."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from defectlens.data import load_mvtec
from defectlens.data.inputs import as_dataset, loader
from defectlens.errors import ConfigError
from defectlens.models import create
from defectlens.models.simplenet import SimpleNet
from defectlens.models.simplenet.torch_model import SimpleNetModel, discriminator, truncated_l1

TINY = {"image_size": 64, "batch_size": 4, "device": "cpu"}


class Identity(nn.Module):
    def forward(self, x):
        return [x]


@pytest.fixture(scope="module")
def splits(tiny_mvtec):
    return load_mvtec(tiny_mvtec, val_fraction=0.25)


@pytest.fixture(scope="module")
def fitted(splits):
    return SimpleNet(max_epochs=4, patience=None, **TINY).fit(splits)


def test_truncated_loss_by_hand():
    good = torch.tensor([1.0, 0.2]).view(1, 1, 1, 2)
    noisy = torch.tensor([-1.0, 0.3]).view(1, 1, 1, 2)
    # (max(0, 0.5 - 1) + max(0, 0.5 - 1)) and (max(0, 0.5 - 0.2) + max(0, 0.5 + 0.3)), averaged: 1.1 / 2
    torch.testing.assert_close(truncated_l1(good, noisy, 0.5), torch.tensor([0.55]))


def test_map_is_the_negative_logit_of_each_standardised_patch():
    adaptor = nn.Conv2d(2, 2, 1, bias=False)
    nn.init.eye_(adaptor.weight[:, :, 0, 0])
    critic = nn.Conv2d(2, 1, 1, bias=False)  # logit = standardised channel 0 - channel 1
    critic.weight.data = torch.tensor([1.0, -1.0]).view(1, 2, 1, 1)
    model = SimpleNetModel(
        Identity(), torch.tensor([1.0, 0.0]), torch.tensor([2.0, 1.0]), adaptor, critic, 0.0
    )
    features = torch.tensor([[[[3.0]], [[0.5]]]])  # one 1 x 1 patch: standardised (1.0, 0.5)
    scores, maps = model.score_embedding(features, (4, 4))
    torch.testing.assert_close(maps, torch.full((1, 4, 4), -0.5))
    torch.testing.assert_close(scores, torch.tensor([-0.5]))


def test_discriminator_shape_and_eval_batch_norm():
    critic = discriminator(6, 16).eval()
    assert critic(torch.randn(2, 6, 5, 7)).shape == (2, 1, 5, 7)


def test_discriminator_learns_on_frozen_standardised_features(fitted, splits):
    losses = [h["loss"] for h in fitted.history_]
    assert len(losses) == 4 and losses[-1] < 0.8 * losses[0]
    module = fitted.module_
    assert not any(p.requires_grad for p in module.extractor.parameters())
    assert not module.training and not module.discriminator.training
    # The standardisation holds the training patches' per-channel mean and spread.
    images = torch.cat([b.images for b in loader(as_dataset(splits.train, fitted.input_resize), 4)])
    with torch.no_grad():
        patches = module.embed(images).half().float().transpose(0, 1).flatten(1)
    torch.testing.assert_close(module.mean, patches.mean(1), atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(module.scale, patches.std(1), atol=1e-3, rtol=1e-3)


def test_defects_score_above_good_images(fitted, splits):
    predictions = fitted.predict(splits.test)
    labels = torch.tensor([s.label for s in splits.test])
    scores = torch.as_tensor(predictions.score)
    assert scores[labels == 1].mean() > scores[labels == 0].mean()


@pytest.mark.parametrize(
    ("setting", "value"),
    [("noise_std", 0.0), ("hidden", 0), ("layers", (3,)), ("adaptor_lr", -1.0), ("optimizer", "lbfgs")],
)
def test_bad_settings_name_the_setting(setting, value):
    with pytest.raises(ConfigError, match=setting):
        create("simplenet", **{setting: value}).check_params()
