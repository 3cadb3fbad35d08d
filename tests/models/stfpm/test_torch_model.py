"""STFPM's loss and anomaly map against hand-computed values, on hand-made features."""

from __future__ import annotations

import pytest
import torch

from defectlens.models.smoothing import combine_maps
from defectlens.models.stfpm.torch_model import (
    StfpmModel,
    StudentExtractor,
    layer_distances,
    normalize,
    stfpm_loss,
)


def test_identical_features_give_zero_loss_and_zero_map():
    features = normalize([torch.randn(2, 5, 4, 4), torch.randn(2, 7, 2, 2)])
    assert torch.equal(stfpm_loss(features, features), torch.zeros(2))
    assert all(torch.equal(d, torch.zeros_like(d)) for d in layer_distances(features, features))


def test_loss_by_hand():
    # One image, one layer of 2 channels on a 1 x 2 grid. Position 0: teacher (1, 0), student (0, 1),
    # squared distance 2. Position 1: teacher (3, 4) -> (0.6, 0.8), student (0.6, 0.8): distance 0.
    teacher = torch.tensor([[[[1.0, 3.0]], [[0.0, 4.0]]]])
    student = torch.tensor([[[[0.0, 0.6]], [[1.0, 0.8]]]])
    t_hat, s_hat = normalize([teacher]), normalize([student])
    torch.testing.assert_close(layer_distances(t_hat, s_hat)[0], torch.tensor([[[1.0, 0.0]]]))
    # (1/2) * (1 / (h w)) * sum ||t - s||^2 = 0.5 * (2 + 0) / 2 = 0.5; a second identical layer adds 0.5.
    torch.testing.assert_close(stfpm_loss(t_hat, s_hat), torch.tensor([0.5]))
    torch.testing.assert_close(stfpm_loss([*t_hat, *t_hat], [*s_hat, *s_hat]), torch.tensor([1.0]))


def test_product_and_sum_of_layer_maps():
    coarse = torch.full((1, 2, 2), 2.0)
    fine = torch.full((1, 4, 4), 3.0)
    torch.testing.assert_close(combine_maps([fine, coarse], (8, 8), "product"), torch.full((1, 8, 8), 6.0))
    torch.testing.assert_close(combine_maps([fine, coarse], (8, 8), "sum"), torch.full((1, 8, 8), 5.0))


class Identity(torch.nn.Module):
    """A stand-in backbone: the image itself, and its 2x average pool, as two feature maps."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return [x * self.scale, torch.nn.functional.avg_pool2d(x, 2) * self.scale]


def test_forward_shapes_and_score_is_map_maximum():
    model = StfpmModel(Identity(), Identity(), "sum", blur_sigma=1.0)
    images = torch.rand(3, 3, 16, 20)
    scores, maps = model(images)
    assert scores.shape == (3,) and maps.shape == (3, 16, 20)
    torch.testing.assert_close(maps, torch.zeros_like(maps))  # same features: nothing is anomalous
    student = Identity()
    student.forward = lambda x: [torch.roll(x, 1, dims=1), torch.nn.functional.avg_pool2d(x, 2)]
    scores, maps = StfpmModel(Identity(), student, "product", blur_sigma=1.0)(images)
    torch.testing.assert_close(scores, maps.amax(dim=(1, 2)))


def test_student_learns_and_keeps_teacher_normalisation():
    student = StudentExtractor("tf_efficientnet_lite0", (1, 2))
    assert all(p.requires_grad for p in student.parameters())
    assert student.train().training and student.body.training
    assert not student.eval().training
    from defectlens.backbones import FeatureExtractor

    teacher = FeatureExtractor("tf_efficientnet_lite0", (1, 2), pretrained=False)
    assert torch.equal(teacher.mean, student.mean) and torch.equal(teacher.std, student.std)
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.train().training


def test_feature_scale_does_not_matter_after_channel_normalisation():
    model = StfpmModel(Identity(), Identity(2.0), "sum", blur_sigma=0.0)
    images = torch.rand(1, 3, 8, 8)
    _, maps = model(images)
    assert maps.shape == (1, 8, 8) and maps.abs().max() == pytest.approx(0.0, abs=1e-6)
