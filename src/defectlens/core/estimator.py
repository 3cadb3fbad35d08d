"""The estimator base that image and audio detectors both stand on.

A setting is declared once, as a class attribute with its default and its check:
`blur_sigma: float = setting(4.0, NON_NEGATIVE)`. Every subclass of `Estimator` is made a keyword-only
dataclass, so its generated `__init__` takes exactly the settings of the class and its parents as
explicit keywords and stores them as given (scikit-learn's rule); a subclass declares only its own, and
redeclares an inherited one to change its default (the parent's check stays unless it gives another).
`check_params` runs every declared check (`core/settings.py`), then the cross-setting rules of
`_check_params`, before any data is read.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, dataclass_transform

from defectlens.core.context import resolve_device
from defectlens.core.settings import POSITIVE_INT, Check, Integer, Text
from defectlens.errors import ConfigError, NotFittedError
from defectlens.post.threshold import ThresholdPolicy

CHECK = "check"  # the metadata key of a setting's check


def setting(default: Any, check: Check | None = None) -> Any:
    """Declare a setting: its default, and the check `check_params` runs on its value (`None`: the check
    inherited for the same name, or none)."""
    return dataclasses.field(default=default, metadata={CHECK: check} if check else {})


def settings_dataclass(cls: type) -> type:
    """Make `cls` a keyword-only dataclass of its settings (no generated equality or repr: an estimator is
    compared by identity, and printed by `Estimator.__repr__`)."""
    return dataclasses.dataclass(kw_only=True, eq=False, repr=False)(cls)


@dataclass_transform(kw_only_default=True, field_specifiers=(setting,))
@settings_dataclass
class Estimator:
    """Base of every detector: settings, their checks, the threshold policy and the fitted check.

    Args:
        batch_size: samples per forward pass (images, or audio windows).
        seed: seed for every random choice the estimator makes.
        device: "auto", "cpu" or "cuda".
        threshold_policy: how the threshold is chosen (`ThresholdPolicy`): "false_reject_rate"
            (the default: reject at most `false_reject_rate` of good parts), "recall" (catch `recall` of
            the labelled defective calibration samples), "quantile" (`threshold_quantile` of the good
            calibration scores) or "f1" (F1-optimal on labelled calibration samples).
        false_reject_rate, recall, threshold_quantile: the targets of those policies.
    """

    name: ClassVar[str] = ""
    # Named sets of settings (e.g. "paper": the published configuration) that `preset_settings` returns and
    # `create(name, preset=...)` and `--preset` apply under any explicit setting.
    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    batch_size: int = setting(8, POSITIVE_INT)
    seed: int = setting(0, Integer(0))
    device: str = setting("auto", Text())
    # Checked together by `ThresholdPolicy.check`.
    threshold_policy: str = setting("false_reject_rate")
    false_reject_rate: float = setting(0.01)
    recall: float = setting(0.95)
    threshold_quantile: float = setting(0.99)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        settings_dataclass(cls)

    @classmethod
    def param_names(cls) -> list[str]:
        """Names of the settings, those a class introduces before its parents' (a redeclared default keeps
        the setting where it was introduced)."""
        declared = {field.name for field in dataclasses.fields(cls)}
        introduced_by: dict[str, type] = {}
        for klass in reversed(cls.__mro__):
            for name in vars(klass).get("__annotations__", {}):
                introduced_by.setdefault(name, klass)
        return [
            name
            for klass in cls.__mro__
            for name in vars(klass).get("__annotations__", {})
            if name in declared and introduced_by[name] is klass
        ]

    @classmethod
    def setting_checks(cls) -> dict[str, Check]:
        """Every declared check, a subclass's declaration replacing its parents' for the same setting."""
        checks: dict[str, Check] = {}
        for klass in reversed(cls.__mro__):
            for field in vars(klass).get("__dataclass_fields__", {}).values():
                if CHECK in field.metadata:
                    checks[field.name] = field.metadata[CHECK]
        return checks

    @classmethod
    def preset_settings(cls, preset: str) -> dict[str, Any]:
        """The settings of the named preset.

        Raises:
            ConfigError: the class has no such preset (the message lists those it has).
        """
        if preset not in cls.presets:
            have = ", ".join(sorted(cls.presets)) or "none"
            raise ConfigError(f"{cls.name or cls.__name__} has no preset '{preset}'; its presets: {have}")
        return dict(cls.presets[preset])

    def get_params(self) -> dict[str, Any]:
        """The settings as given to the constructor."""
        return {name: getattr(self, name) for name in self.param_names()}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    def policy(self) -> ThresholdPolicy:
        """The threshold policy these settings describe."""
        return ThresholdPolicy(
            self.threshold_policy, self.false_reject_rate, self.recall, self.threshold_quantile
        )

    def check_params(self) -> None:
        """Validate the settings: each declared check, then the rules that relate settings.

        Raises:
            ConfigError: naming the setting, what it must be and the value it got.
        """
        for name, check in self.setting_checks().items():
            check(name, getattr(self, name))
        self.policy().check()
        resolve_device(self.device)
        self._check_params()

    def _check_params(self) -> None:  # noqa: B027 (an optional hook: most settings need no cross-check)
        """Rules that relate several settings; subclasses extend it and call super()."""

    def check_is_fitted(self) -> None:
        """Raises NotFittedError before `fit` or `load`."""
        if not hasattr(self, "module_"):
            raise NotFittedError(
                f"{type(self).__name__} is not fitted yet: call fit() or load a checkpoint first"
            )
