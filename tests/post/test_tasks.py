import numpy as np
import pytest

from defectlens.errors import ConfigError
from defectlens.post.tasks import TASKS, check_task, classify, detect, segment


def test_classify_boundary():
    out = classify(np.array([0.0, np.nextafter(0.5, 0.0), 0.5, 0.9]))
    assert out.dtype == bool
    assert out.tolist() == [False, False, True, True]


def test_segment():
    m = np.array([[0.1, 0.5], [0.49, 0.99]], dtype=np.float32)
    assert segment(m).tolist() == [[False, True], [False, True]]
    b = segment(np.stack([m, 1 - m]))
    assert b.shape == (2, 2, 2) and b.dtype == bool
    with pytest.raises(ConfigError, match=r"\(H, W\) or \(B, H, W\)"):
        segment(np.zeros(4))


def hand_map() -> np.ndarray:
    m = np.zeros((20, 30), dtype=np.float32)
    m[2:6, 3:8] = 0.6  # blob A: 4x5 = 20 px
    m[4, 5] = 0.7
    m[10:15, 20:26] = 0.8  # blob B: 5x6 = 30 px, joined diagonally to a 2x2 tail (8-connected)
    m[15:17, 26:28] = 0.55
    m[10, 20] = 0.95
    m[17:19, 2:4] = 0.99  # tiny speck: 4 px, below min_area but the highest value
    m[0, 0] = 0.4999  # below the threshold
    return m


def test_detect_exact_boxes():
    boxes = detect(hand_map(), min_area=16)
    assert boxes == [
        (20, 10, 28, 17, pytest.approx(0.95)),
        (3, 2, 8, 6, pytest.approx(0.7)),
    ]
    assert all(isinstance(v, int) for b in boxes for v in b[:4])
    assert all(isinstance(b[4], float) for b in boxes)


def test_detect_min_area_keeps_speck():
    boxes = detect(hand_map(), min_area=4)
    assert boxes[0] == (2, 17, 4, 19, pytest.approx(0.99))
    assert len(boxes) == 3


def test_detect_empty():
    assert detect(np.zeros((8, 8))) == []
    assert detect(np.full((8, 8), 0.49)) == []


def test_detect_errors():
    with pytest.raises(ConfigError, match=r"\(H, W\)"):
        detect(np.zeros((1, 8, 8)))
    with pytest.raises(ConfigError, match="min_area"):
        detect(np.zeros((8, 8)), min_area=0)


def test_check_task():
    assert TASKS == ("classification", "segmentation", "detection")
    for t in TASKS:
        assert check_task(t) == t
    assert check_task(" Detection ") == "detection"
    with pytest.raises(
        ConfigError, match=r"task must be one of \['classification', 'segmentation', 'detection'\], got 'x'"
    ):
        check_task("x")
    with pytest.raises(ConfigError):
        check_task(None)
