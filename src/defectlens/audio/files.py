"""DCASE Task 2 clip names and folder layout.

Two naming conventions are understood; any other `.wav` name is rejected with the file named:

- DCASE 2020: `normal_id_00_00000000.wav`, `anomaly_id_00_00000012.wav`; evaluation clips without a
  label: `id_05_00000252.wav`. The section is the machine id (`id_00`).
- DCASE 2022 (and later): `section_00_source_train_normal_0000_<attributes>.wav`,
  `section_00_target_test_anomaly_0012_<attributes>.wav`; evaluation clips without a label:
  `section_03_0000.wav`. The section is `section_00`, the domain `source` or `target`.

Layout: `<root>/<machine_type>/{train,test}/*.wav`. `list_clips` also accepts a machine-type folder
(`<root>/fan`) or a folder of clips itself (`<root>/fan/test`); the machine type is always the name
of the folder that holds the split folder (or of the folder of clips when it is not named train/test).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from defectlens.errors import ConfigError, DataError

__all__ = ["ClipInfo", "SPLITS", "parse_clip_name", "list_clips", "audio_files"]

SPLITS = ("train", "test")
AUDIO_SUFFIX = ".wav"

_DCASE2020 = re.compile(r"^(?:(?P<label>normal|anomaly)_)?(?P<section>id_\d+)_(?P<index>\d+)$")
_DCASE2022 = re.compile(
    r"^(?P<section>section_\d+)_(?:(?P<domain>source|target)_(?P<split>train|test)_"
    r"(?P<label>normal|anomaly)_)?(?P<index>\d+)(?:_.*)?$"
)
_NAME_HELP = (
    "expected a DCASE 2020 name like 'normal_id_00_00000000.wav' / 'anomaly_id_00_00000000.wav' or a "
    "DCASE 2022 name like 'section_00_source_test_normal_0000_<attributes>.wav'"
)


@dataclass(frozen=True)
class ClipInfo:
    """What a clip's path says about it.

    Attributes:
        path: the `.wav` file.
        machine_type: name of the folder above the split folder (e.g. "fan").
        section: machine id (DCASE 2020, "id_00") or section (DCASE 2022, "section_00").
        label: 0 normal, 1 anomalous, `None` when the name carries no label (evaluation clips).
        domain: "source" or "target" (DCASE 2022), `None` for DCASE 2020 names.
        convention: "dcase2020" or "dcase2022".
    """

    path: Path
    machine_type: str
    section: str
    label: int | None
    domain: str | None
    convention: str


def parse_clip_name(path: str | Path) -> ClipInfo:
    """Read section, label and domain from a DCASE 2020 or 2022 clip name.

    Raises:
        DataError: the name follows neither convention.
    """
    path = Path(path)
    stem = path.stem
    match, convention = _DCASE2020.match(stem), "dcase2020"
    if match is None:
        match, convention = _DCASE2022.match(stem), "dcase2022"
    if path.suffix.lower() != AUDIO_SUFFIX or match is None:
        raise DataError(f"cannot read the clip name of {path}: {_NAME_HELP}")
    label = match["label"]
    parent = path.parent
    machine_type = parent.parent.name if parent.name in SPLITS else parent.name
    return ClipInfo(
        path=path,
        machine_type=machine_type,
        section=match["section"],
        label=None if label is None else int(label == "anomaly"),
        domain=match.groupdict().get("domain"),
        convention=convention,
    )


def audio_files(folder: Path) -> list[Path]:
    """The `.wav` files directly in `folder`, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == AUDIO_SUFFIX)


def _split_folders(path: Path, split: str) -> list[Path]:
    """The split folders `path` stands for: itself (named `split` or holding clips), its `split` child, or
    `<child>/<split>` of each child."""
    if path.name == split or audio_files(path):
        return [path]
    if (path / split).is_dir():
        return [path / split]
    return sorted(child / split for child in path.iterdir() if (child / split).is_dir())


def list_clips(path: str | Path, split: str, machine_type: str | None = None) -> list[ClipInfo]:
    """Every clip of `split` under a DCASE root, a machine-type folder or a split folder.

    Args:
        path: `<root>`, `<root>/<machine_type>` or `<root>/<machine_type>/<split>`.
        split: "train" or "test".
        machine_type: keep only this machine type; `None` keeps all.

    Returns:
        The clips sorted by machine type and file name.

    Raises:
        ConfigError: `split` is not "train" or "test".
        DataError: the folder is missing, holds no `.wav` clip for `split`, or a clip name follows
            neither naming convention.
    """
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"audio data folder not found: {root}")
    clips = [parse_clip_name(file) for folder in _split_folders(root, split) for file in audio_files(folder)]
    if machine_type is not None:
        clips = [clip for clip in clips if clip.machine_type == machine_type]
    if not clips:
        wanted = f" of machine type '{machine_type}'" if machine_type else ""
        raise DataError(
            f"no {split} clips{wanted} under {root}: expected <root>/<machine_type>/{split}/*.wav, "
            f"<machine_type>/{split}/*.wav or a {split}/ folder of .wav files"
        )
    return sorted(clips, key=lambda clip: (clip.machine_type, clip.path.name))
