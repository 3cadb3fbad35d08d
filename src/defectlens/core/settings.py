"""Declarative checks of estimator settings: one message format, so a bad `--set` never reaches a traceback.

An estimator declares each setting with its check (`name: int = setting(8, POSITIVE_INT)`, see
`core/estimator.py`); `Estimator.check_params` runs the checks of every class in its hierarchy before any
data is read. Each check raises `ConfigError` naming the setting, what
it must be, and the value it got.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from defectlens.errors import ConfigError


class Check:
    """A rule one setting's value must follow."""

    def describe(self) -> str:
        """What the value must be, as the error message says it ("a positive integer")."""
        raise NotImplementedError

    def accepts(self, value: Any) -> bool:
        raise NotImplementedError

    def __call__(self, name: str, value: Any) -> None:
        if not self.accepts(value):
            raise ConfigError(f"{name} must be {self.describe()}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Integer(Check):
    """An integer in [low, high] (either bound optional)."""

    low: int | None = None
    high: int | None = None

    def describe(self) -> str:
        if self.low == 1 and self.high is None:
            return "a positive integer"
        if self.high is None:
            return f"an integer >= {self.low}" if self.low is not None else "an integer"
        return f"an integer in [{self.low}, {self.high}]"

    def accepts(self, value: Any) -> bool:
        return (
            _is_int(value)
            and (self.low is None or value >= self.low)
            and (self.high is None or value <= self.high)
        )


OPEN_LOW, OPEN_HIGH = ("right", "neither"), ("left", "neither")


@dataclass(frozen=True)
class Real(Check):
    """A finite number between `low` and `high`; `closed` says which bounds are allowed values."""

    low: float | None = None
    high: float | None = None
    closed: str = "both"  # "both", "left", "right" or "neither"

    def describe(self) -> str:
        if self.high is None:
            return f"a number {'>' if self.closed in OPEN_LOW else '>='} {self.low}"
        if self.low is None:
            return f"a number {'<' if self.closed in OPEN_HIGH else '<='} {self.high}"
        left = "(" if self.closed in OPEN_LOW else "["
        right = ")" if self.closed in OPEN_HIGH else "]"
        return f"a number in {left}{self.low}, {self.high}{right}"

    def accepts(self, value: Any) -> bool:
        if not _is_real(value):
            return False
        below = self.low is not None and (value < self.low or (value == self.low and self.closed in OPEN_LOW))
        above = self.high is not None and (
            value > self.high or (value == self.high and self.closed in OPEN_HIGH)
        )
        return not (below or above)


@dataclass(frozen=True)
class OneOf(Check):
    """One of a fixed set of values."""

    choices: Sequence[Any]

    def describe(self) -> str:
        return f"one of {list(self.choices)}"

    def accepts(self, value: Any) -> bool:
        return any(value == c and type(value) is type(c) for c in self.choices)


@dataclass(frozen=True)
class Boolean(Check):
    """True or False."""

    def describe(self) -> str:
        return "True or False"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)


@dataclass(frozen=True)
class Text(Check):
    """A non-empty string."""

    def describe(self) -> str:
        return "a non-empty string"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and bool(value)


@dataclass(frozen=True)
class FilePath(Check):
    """A non-empty path, as a string or a path object (whether it exists is checked where it is read)."""

    def describe(self) -> str:
        return "a file path"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str | os.PathLike) and bool(os.fspath(value))


@dataclass(frozen=True)
class Items(Check):
    """A list or tuple of `min_length` to `max_length` values (None: no upper bound), each accepted by
    `item`."""

    item: Check
    min_length: int = 1
    max_length: int | None = None

    def describe(self) -> str:
        if self.max_length == self.min_length:
            count = str(self.min_length)
        elif self.max_length is None:
            count = f"at least {self.min_length}"
        else:
            count = f"{self.min_length} to {self.max_length}"
        return f"a list of {count} values, each {self.item.describe()}"

    def accepts(self, value: Any) -> bool:
        return (
            isinstance(value, list | tuple)
            and self.min_length <= len(value) <= (self.max_length or len(value))
            and all(self.item.accepts(v) for v in value)
        )


@dataclass(frozen=True)
class AnyOf(Check):
    """A value that one of `checks` accepts."""

    checks: Sequence[Check]

    def describe(self) -> str:
        return " or ".join(check.describe() for check in self.checks)

    def accepts(self, value: Any) -> bool:
        return any(check.accepts(value) for check in self.checks)


@dataclass(frozen=True)
class Optional(Check):
    """None, or a value `check` accepts; `meaning` says what None stands for."""

    check: Check
    meaning: str = ""

    def describe(self) -> str:
        return f"{self.check.describe()} or None{f' ({self.meaning})' if self.meaning else ''}"

    def accepts(self, value: Any) -> bool:
        return value is None or self.check.accepts(value)


POSITIVE_INT = Integer(1)
COLOUR_CHANNELS = OneOf((1, 3))  # grey or RGB
NON_NEGATIVE = Real(0)
POSITIVE = Real(0, closed="neither")
FRACTION = Real(0, 1, closed="right")  # (0, 1]
