"""The name -> class registry shared by image and audio detectors."""

from __future__ import annotations

import pytest

from defectlens.errors import ConfigError
from defectlens.registry import Registry


class Widget:
    def __init__(self, size: int = 1, colour: str = "red") -> None:
        self.size, self.colour = size, colour

    @classmethod
    def param_names(cls) -> list[str]:
        return ["size", "colour"]


def test_register_create_and_errors_name_what_is_valid():
    registry: Registry = Registry("widget")
    registry.register("plain")(Widget)
    assert Widget.name == "plain" and registry.names() == ["plain"]
    made = registry.create("plain", size=3)  # a setting left out keeps its default
    assert (made.size, made.colour) == (3, "red")
    assert registry.create("plain", colour=None).colour is None  # an explicit None is a value
    with pytest.raises(ConfigError, match="unknown widget 'fancy'; available widgets: plain"):
        registry.get("fancy")
    with pytest.raises(ConfigError, match="widget 'plain' has no setting \\['weight'\\]; its settings are"):
        registry.create("plain", weight=2)
    with pytest.raises(ConfigError, match="widget name 'plain' is already registered by Widget"):
        registry.register("plain")(type("Other", (Widget,), {}))


def test_every_module_of_the_package_is_imported_on_first_lookup():
    registry: Registry = Registry("detector", package="defectlens.models")
    assert registry.names() == []  # the families register into the image registry, not this one
    from defectlens.models import list_detectors

    assert {"anogan", "fanogan", "padim", "patchcore", "stfpm", "autoencoder"} <= set(list_detectors())


def test_an_explicit_none_reaches_the_detector():
    from defectlens.models import create

    # "never stop early": it used to be dropped, so training stopped after 10 epochs without progress
    assert create("autoencoder", patience=None).patience is None
    assert create("autoencoder").patience == 10
    with pytest.raises(ConfigError, match="image_size"):  # where None means nothing, it is refused
        create("autoencoder", image_size=None).check_params()


def test_a_preset_sets_what_explicit_settings_do_not():
    from defectlens.models import create

    paper = create("stfpm", preset="paper", blur_sigma=2.0)
    assert paper.layers == (1, 2, 3) and paper.optimizer == "sgd" and paper.resize == "squash"
    assert paper.blur_sigma == 2.0  # the explicit setting wins over the preset's 4.0
    assert create("stfpm").layers == (2, 3) and create("stfpm").resize == "pad"
    with pytest.raises(ConfigError, match="patchcore has no preset 'paper'; its presets: none"):
        create("patchcore", preset="paper")
