"""RD4AD's loss, anomaly map and architecture against hand-computed values and the teacher's shapes."""

from __future__ import annotations

import pytest
import torch

from defectlens.backbones import FeatureExtractor
from defectlens.errors import ConfigError
from defectlens.models.rd4ad.torch_model import (
    Rd4adModel,
    ReverseStudent,
    build_model,
    check_strides,
    embedding_width,
    layer_distances,
    rd4ad_loss,
)


def test_identical_features_give_zero_loss_and_zero_map():
    features = [torch.randn(2, 5, 4, 4), torch.randn(2, 7, 2, 2)]
    torch.testing.assert_close(rd4ad_loss(features, features), torch.zeros(2), atol=1e-6, rtol=0)
    for distance in layer_distances(features, features):
        torch.testing.assert_close(distance, torch.zeros_like(distance), atol=1e-6, rtol=0)
    # Cosine similarity ignores the scale of the student's features.
    scaled = [3.0 * f for f in features]
    torch.testing.assert_close(rd4ad_loss(features, scaled), torch.zeros(2), atol=1e-6, rtol=0)


def test_loss_by_hand():
    # One image, one layer of 2 channels on a 1 x 3 grid. Position 0: teacher (1, 0), student (0, 1):
    # orthogonal, 1 - cos = 1. Position 1: teacher (3, 4), student (0.6, 0.8): parallel, 0. Position 2:
    # teacher (1, 0), student (-2, 0): opposite, 2.
    teacher = torch.tensor([[[[1.0, 3.0, 1.0]], [[0.0, 4.0, 0.0]]]])
    student = torch.tensor([[[[0.0, 0.6, -2.0]], [[1.0, 0.8, 0.0]]]])
    torch.testing.assert_close(layer_distances([teacher], [student])[0], torch.tensor([[[1.0, 0.0, 2.0]]]))
    # The mean over positions, (1 + 0 + 2) / 3 = 1; a second identical layer adds 1.
    torch.testing.assert_close(rd4ad_loss([teacher], [student]), torch.tensor([1.0]))
    torch.testing.assert_close(rd4ad_loss([teacher, teacher], [student, student]), torch.tensor([2.0]))


class Pyramid(torch.nn.Module):
    """A stand-in teacher: the image itself and its 2x average pool, as two feature maps."""

    def forward(self, x):
        return [x, torch.nn.functional.avg_pool2d(x, 2)]


class Rebuilder(torch.nn.Module):
    """A stand-in student: the teacher's maps, with pixel (0, 0) of the fine map and the right half of
    the coarse map negated (cosine distance 2 there, 0 elsewhere)."""

    def forward(self, features):
        fine, coarse = (f.clone() for f in features)
        fine[:, :, 0, 0] *= -1
        coarse[:, :, :, coarse.shape[-1] // 2 :] *= -1
        return [fine, coarse]


def test_map_is_the_sum_of_the_upsampled_layer_maps_by_hand():
    images = torch.rand(1, 3, 2, 4) + 0.1
    scores, maps = Rd4adModel(Pyramid(), Rebuilder(), blur_sigma=0.0)(images)
    # Coarse (1 x 2) distances [0, 2] upsampled bilinearly to 4 columns (align_corners=False samples at
    # -0.25, 0.25, 0.75, 1.25, clamped): [0, 0.5, 1.5, 2] in both rows. Fine: 2 at (0, 0), 0 elsewhere.
    expected = torch.tensor([[[2.0, 0.5, 1.5, 2.0], [0.0, 0.5, 1.5, 2.0]]])
    torch.testing.assert_close(maps, expected)
    torch.testing.assert_close(scores, torch.tensor([2.0]))


def test_blurred_map_keeps_shape_and_score_is_its_maximum():
    images = torch.rand(2, 3, 40, 48) + 0.1
    scores, maps = Rd4adModel(Pyramid(), Rebuilder(), blur_sigma=2.0)(images)
    assert scores.shape == (2,) and maps.shape == (2, 40, 48)
    torch.testing.assert_close(scores, maps.amax(dim=(1, 2)))


@pytest.mark.parametrize("layers", [(1, 2, 3), (1, 3), (2,)])
def test_student_rebuilds_every_teacher_layer_at_its_shape_for_a_non_square_input(layers):
    # 72 x 100 px: Lite0's stride-16 layer is 5 x 7, odd sides the decoder must crop back to.
    teacher = FeatureExtractor("tf_efficientnet_lite0", layers, pretrained=False)
    student = ReverseStudent(teacher.channels, teacher.strides, embedding_width(teacher.channels, None))
    with torch.no_grad():
        features = teacher(torch.rand(2, 3, 72, 100))
        embedding = student.bottleneck(features)
        rebuilt = student(features)
    height, width = features[-1].shape[-2:]
    assert embedding.shape == (2, 2 * teacher.channels[-1], -(-height // 2), -(-width // 2))
    assert [r.shape for r in rebuilt] == [f.shape for f in features]


def test_default_architecture_widths():
    model = build_model("tf_efficientnet_lite0", (1, 2, 3), None, False, None, 4.0)
    assert model.teacher.channels == [24, 40, 112] and model.teacher.strides == [4, 8, 16]
    bottleneck = model.student.bottleneck
    # Layer 1 takes two stride-2 steps (24 -> 40 -> 112), layer 2 one (40 -> 112), layer 3 none.
    assert [len(step) for step in bottleneck.fusion] == [2, 1, 0]
    shortcut = bottleneck.embed.shortcut[0]
    assert shortcut.in_channels == 336 and shortcut.out_channels == 224
    narrow = build_model("tf_efficientnet_lite0", (1, 2, 3), None, False, 64, 4.0)
    assert narrow.student.bottleneck.embed.shortcut[0].out_channels == 64
    assert narrow.student.decoder.stages[0][0].shortcut[0].in_channels == 64
    assert all(p.requires_grad for p in model.student.parameters())
    assert not any(p.requires_grad for p in model.teacher.parameters())
    model.train()
    assert model.student.training and not model.teacher.training


def test_strides_must_grow_by_powers_of_two():
    check_strides([4, 8, 32])
    with pytest.raises(ConfigError, match="layers must be backbone layers whose strides grow"):
        check_strides([4, 12])
    with pytest.raises(ConfigError, match="layers must"):
        check_strides([8, 8])
