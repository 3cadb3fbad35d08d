"""DCASE 2020 / 2022 clip names and the accepted folder layouts."""

from __future__ import annotations

from pathlib import Path

import pytest

from defectlens.audio.files import list_clips, parse_clip_name
from defectlens.errors import ConfigError, DataError


@pytest.mark.parametrize(
    ("name", "section", "label", "domain", "convention"),
    [
        ("normal_id_00_00000000.wav", "id_00", 0, None, "dcase2020"),
        ("anomaly_id_04_00000123.wav", "id_04", 1, None, "dcase2020"),
        ("id_05_00000252.wav", "id_05", None, None, "dcase2020"),
        ("section_00_source_train_normal_0000_a_1_b_2.wav", "section_00", 0, "source", "dcase2022"),
        ("section_02_target_test_anomaly_0012_vel_6.wav", "section_02", 1, "target", "dcase2022"),
        ("section_01_source_test_normal_0003.wav", "section_01", 0, "source", "dcase2022"),
        ("section_03_0000.wav", "section_03", None, None, "dcase2022"),
    ],
)
def test_both_conventions_are_parsed(name, section, label, domain, convention):
    clip = parse_clip_name(Path("data/fan/test") / name)
    assert (clip.section, clip.label, clip.domain, clip.convention) == (section, label, domain, convention)
    assert clip.machine_type == "fan"


@pytest.mark.parametrize(
    "name", ["clip_01.wav", "normal_00000000.wav", "broken_id_00_0001.wav", "normal_id_00_0.mp3"]
)
def test_other_names_are_rejected_with_the_file_named(name):
    with pytest.raises(DataError, match=f"{name}.*normal_id_00_00000000.wav"):
        parse_clip_name(Path("fan/train") / name)


@pytest.mark.parametrize("where", ["", "fan", "fan/test"])
def test_root_machine_type_and_split_folders_are_accepted(tiny_dcase, where):
    clips = list_clips(tiny_dcase / where, "test")
    assert len(clips) == 6 and {c.machine_type for c in clips} == {"fan"}
    assert sorted(c.label for c in clips) == [0, 0, 0, 1, 1, 1]


def test_machine_type_filter_and_missing_split(tiny_dcase):
    assert len(list_clips(tiny_dcase, "train", machine_type="fan")) == 6
    with pytest.raises(DataError, match="no train clips of machine type 'pump'"):
        list_clips(tiny_dcase, "train", machine_type="pump")
    with pytest.raises(DataError, match="not found"):
        list_clips(tiny_dcase / "nowhere", "train")
    with pytest.raises(ConfigError, match="split must be one of"):
        list_clips(tiny_dcase, "valid")


def test_a_badly_named_clip_in_a_split_folder_is_named(tmp_path, tiny_dcase):
    folder = tmp_path / "pump" / "train"
    folder.mkdir(parents=True)
    (folder / "recording 1.wav").write_bytes(b"")
    with pytest.raises(DataError, match="recording 1.wav"):
        list_clips(tmp_path, "train")
