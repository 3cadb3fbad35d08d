"""A name -> class registry: the CLI, configs and checkpoints resolve names only through one.

Image detectors (`defectlens.models`) and audio detectors (`defectlens.audio.models`) each keep one. A
class registers in one step, by `@register(name)` where it is defined; the registry imports every module
of its package on first lookup, so a new family needs no list edited elsewhere.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from defectlens.core.checkpoint import read_checkpoint
from defectlens.errors import ConfigError

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Classes registered by name, with `param_names()` and a `name` class attribute.

    Args:
        kind: what the classes are, for messages ("model", "audio model").
        package: the package whose modules and sub-packages define the built-in classes; all of them are
            imported on first lookup, which runs their `@register` decorators (None: no built-in ones).
        checkpoint_kind: the `kind` in the header of the classes' checkpoints (`core.checkpoint`).
        accept_unmarked: also load checkpoints written before the kind was recorded.
    """

    def __init__(
        self,
        kind: str,
        package: str | None = None,
        checkpoint_kind: str = "",
        accept_unmarked: bool = False,
    ) -> None:
        self.kind = kind
        self.package = package
        self.checkpoint_kind = checkpoint_kind
        self.accept_unmarked = accept_unmarked
        self._classes: dict[str, T] = {}
        self._imported = False

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator that makes a class available as `create(name)`."""

        def decorate(cls: T) -> T:
            if name in self._classes and self._classes[name] is not cls:
                raise ConfigError(
                    f"{self.kind} name '{name}' is already registered by {self._classes[name].__name__}"
                )
            cls.name = name
            self._classes[name] = cls
            return cls

        return decorate

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        self._import_builtin()
        return sorted(self._classes)

    def get(self, name: str) -> T:
        """The class registered as `name`; an unknown name lists the valid ones."""
        self._import_builtin()
        if name not in self._classes:
            raise ConfigError(
                f"unknown {self.kind} '{name}'; available {self.kind}s: {', '.join(sorted(self._classes))}"
            )
        return self._classes[name]

    def create(self, name: str, preset: str | None = None, **params: Any) -> Any:
        """Build `name` with hyper-parameters `params` over those of its `preset` (None: the defaults).

        A value of `None` is passed on as given: for settings such as `patience` it has a meaning of its
        own ("never stop early"), so leaving a setting out is the only way to keep its default.
        """
        cls = self.get(name)
        valid = cls.param_names()
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ConfigError(
                f"{self.kind} '{name}' has no setting {unknown}; its settings are {sorted(valid)}"
            )
        base = cls.preset_settings(preset) if preset is not None else {}
        return cls(**{**base, **params})

    def load(self, path: str | Path, **options: Any) -> Any:
        """Rebuild a fitted object from a checkpoint written by its class's `save`, by the class's
        `from_checkpoint(checkpoint, path, **options)`.

        Raises:
            CheckpointError: the file is missing, unreadable, of another kind, of a newer format, or its
                weights do not fit its settings.
        """
        checkpoint = read_checkpoint(path, self.checkpoint_kind, accept_unmarked=self.accept_unmarked)
        return self.get(checkpoint["detector"]).from_checkpoint(checkpoint, path, **options)

    def _import_builtin(self) -> None:
        if self._imported or self.package is None:
            return
        package = importlib.import_module(self.package)
        for module in pkgutil.iter_modules(package.__path__, prefix=f"{self.package}."):
            importlib.import_module(module.name)
        self._imported = True
