"""The estimator base that image and audio detectors both stand on.

Settings are keyword arguments of `__init__`, stored as given (scikit-learn's rule) by `_keep(locals())`,
and read back from the constructor signatures of the class hierarchy; the shared ones are declared here
once, and a subclass lists only its own, passing the rest through `**base`. Each class declares checks
for its settings (`settings`, see `core/settings.py`); `check_params` runs all of them, then the
cross-setting rules of `_check_params`, before any data is read.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from defectlens.core.context import resolve_device
from defectlens.core.settings import POSITIVE_INT, Check, Integer, Text
from defectlens.errors import ConfigError, NotFittedError
from defectlens.post.threshold import ThresholdPolicy


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
    # Checks of the settings this class declares (name -> Check); merged over the class hierarchy.
    settings: ClassVar[dict[str, Check]] = {
        "batch_size": POSITIVE_INT,
        "seed": Integer(0),
        "device": Text(),
    }

    def __init__(
        self,
        *,
        batch_size: int = 8,
        seed: int = 0,
        device: str = "auto",
        threshold_policy: str = "false_reject_rate",
        false_reject_rate: float = 0.01,
        recall: float = 0.95,
        threshold_quantile: float = 0.99,
    ) -> None:
        self._keep(locals())

    def _keep(self, arguments: dict[str, Any]) -> None:
        """Store a constructor's arguments (its `locals()`) unchanged under their own names: a
        constructor only stores (scikit-learn's rule), so checks wait for `check_params`."""
        names = set(type(self).param_names())
        for name, value in arguments.items():
            if name in names:
                setattr(self, name, value)

    @classmethod
    def param_names(cls) -> list[str]:
        """Names of the keyword settings, read from the `__init__` signatures of the class hierarchy."""
        names: list[str] = []
        for klass in cls.__mro__:
            if "__init__" in vars(klass) and issubclass(klass, Estimator):
                parameters = inspect.signature(klass.__init__).parameters.values()
                names += [
                    p.name
                    for p in parameters
                    if p.name != "self" and p.kind != p.VAR_KEYWORD and p.name not in names
                ]
        return names

    @classmethod
    def setting_checks(cls) -> dict[str, Check]:
        """Every declared check, a subclass's declaration replacing its parents' for the same setting."""
        checks: dict[str, Check] = {}
        for klass in reversed(cls.__mro__):
            checks.update(vars(klass).get("settings", {}))
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
