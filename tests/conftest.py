"""Shared fixtures: a tiny generated MVTec-layout dataset with a visible defect, the real-data root, and a
real uvicorn server on a loopback port."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def texture(seed: int, size: tuple[int, int] = (72, 96)) -> np.ndarray:
    """A smooth grey texture like a machined surface: good parts differ only by noise."""
    rng = np.random.default_rng(seed)
    h, w = size
    rows = np.linspace(0, 6 * np.pi, h)[:, None]
    base = 120 + 40 * np.sin(rows + rng.uniform(0, 0.3)) + rng.normal(0, 4, (h, w))
    return np.clip(np.repeat(base[..., None], 3, axis=2), 0, 255).astype(np.uint8)


def with_scratch(image: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Paint a bright diagonal scratch and return the image and its mask."""
    rng = np.random.default_rng(seed)
    out, mask = image.copy(), np.zeros(image.shape[:2], np.uint8)
    h, w = mask.shape
    r0, c0 = rng.integers(10, h // 2), rng.integers(10, w // 2)
    for t in range(24):
        r, c = r0 + t // 2, c0 + t
        out[r : r + 3, c : c + 3] = 255
        mask[r : r + 3, c : c + 3] = 255
    return out, mask


@pytest.fixture(scope="session")
def make_texture():
    """The `texture` generator, for tests that build their own image lists."""
    return texture


@pytest.fixture(scope="session")
def tiny_mvtec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/good 16, test/good 4, test/scratch 4 with masks; non-square 72x96 images."""
    root = tmp_path_factory.mktemp("tiny_mvtec")
    for folder in ("train/good", "test/good", "test/scratch", "ground_truth/scratch"):
        (root / folder).mkdir(parents=True)
    for i in range(16):
        Image.fromarray(texture(i)).save(root / "train/good" / f"{i:03d}.png")
    for i in range(4):
        Image.fromarray(texture(100 + i)).save(root / "test/good" / f"g{i}.png")
        image, mask = with_scratch(texture(200 + i), i)
        Image.fromarray(image).save(root / "test/scratch" / f"s{i}.png")
        Image.fromarray(mask).save(root / "ground_truth/scratch" / f"s{i}_mask.png")
    return root


@pytest.fixture(scope="session")
def magnetic_tile() -> Path:
    root = SHARED_DATA / "mtd" / "magnetic_tile"
    if not (root / "train" / "good").is_dir():
        pytest.skip(f"real data not found at {root} (see shared/data/README.md)")
    return root


@pytest.fixture(scope="session")
def mvtec_screw() -> Path:
    root = SHARED_DATA / "mvtec_screw"
    if not (root / "train" / "good").is_dir():
        pytest.skip(f"real data not found at {root} (see shared/data/README.md)")
    return root


@pytest.fixture(scope="session")
def mnist() -> Path:
    root = SHARED_DATA / "mnist"
    if not (root / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real data not found at {root} (see shared/data/README.md)")
    return root


@pytest.fixture(scope="session")
def quick():
    """A factory of detectors sized for unit tests (see `quick_detector`)."""
    return quick_detector


def quick_detector(name: str, **params):
    """Detector `name` sized for unit tests: 64 px on the CPU, at most 20 epochs of every training phase,
    10 steps of an inference-time search (as sklearn's checks shorten max_iter) and one training, not the
    calibration refits of small sets (tests/models/test_calibration.py covers those): generic rules on
    setting names, not one per model name."""
    from defectlens.models import create, detector_class

    settings: dict = {"image_size": 64, "batch_size": 4, "device": "cpu"}
    for param in detector_class(name).param_names():
        if param.endswith("epochs"):
            settings[param] = 20
        elif param.endswith("steps"):
            settings[param] = 10
        elif param.endswith("refits"):
            settings[param] = 0
    return create(name, **{**settings, **params})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """uvicorn in a thread, on 127.0.0.1 and a free port."""

    def __init__(self, app) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *_) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def server():
    """`with server(app) as url:` runs `app` on 127.0.0.1 for the block."""
    return Server


@pytest.fixture(scope="session")
def loopback_port():
    """A function returning a free TCP port on 127.0.0.1."""
    return free_port
