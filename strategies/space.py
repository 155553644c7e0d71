"""Parameter search spaces: what a strategy declares an optimiser may vary, and within which bounds.

Each registered strategy carries a ``search_space`` (:class:`SearchSpace`): one dimension per searchable parameter
(:class:`IntRange`, :class:`FloatRange`, :class:`Choice`) and the constraints between them (:class:`LessThan`:
``fast < slow``). Parameters not in the space keep their configured value. The space is plain data: no optimiser is
imported here; :mod:`core.research` turns it into Optuna suggestions.

A constraint is honoured by construction, not by rejection: for ``LessThan("fast", "slow")`` the optimiser draws
``slow`` first and then ``fast`` within ``[fast.low, min(fast.high, slow - gap)]``, so no trial is spent on an
impossible combination. Every drawn combination is still validated by the strategy's own ``Params``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Choice", "Dimension", "FloatRange", "IntRange", "LessThan", "SearchSpace"]


@dataclass(frozen=True, slots=True)
class IntRange:
    """Whole numbers ``low..high`` inclusive, on a grid of ``step``; ``log`` samples on a log scale."""

    low: int
    high: int
    step: int = 1
    log: bool = False

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"IntRange low {self.low} is above high {self.high}")
        if self.step < 1:
            raise ValueError(f"IntRange step must be at least 1, got {self.step}")


@dataclass(frozen=True, slots=True)
class FloatRange:
    """Real numbers ``low..high`` inclusive (on a grid of ``step`` when given); ``log`` samples on a log scale."""

    low: float
    high: float
    step: float | None = None
    log: bool = False

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"FloatRange low {self.low} is above high {self.high}")


@dataclass(frozen=True, slots=True)
class Choice:
    """One of a closed set of values (int, float, bool, str or None)."""

    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("Choice needs at least one value")


Dimension = IntRange | FloatRange | Choice


@dataclass(frozen=True, slots=True)
class LessThan:
    """``smaller + gap <= larger`` (for whole numbers with ``gap=1``: ``smaller < larger``)."""

    smaller: str
    larger: str
    gap: float = 1


@dataclass(frozen=True, slots=True)
class SearchSpace:
    """The dimensions an optimiser may vary and the constraints between them."""

    dimensions: Mapping[str, Dimension]
    constraints: tuple[LessThan, ...] = field(default=())

    def __post_init__(self) -> None:
        for c in self.constraints:
            for name in (c.smaller, c.larger):
                if name not in self.dimensions:
                    raise ValueError(f"constraint on {name!r}, which is not a dimension of the space")
            if isinstance(self.dimensions[c.smaller], Choice) or isinstance(self.dimensions[c.larger], Choice):
                raise ValueError("constraints apply to ranges, not choices")

    def order(self) -> list[str]:
        """The dimensions in drawing order: a constraint's ``larger`` before its ``smaller``."""
        names = list(self.dimensions)
        later = {c.smaller for c in self.constraints}
        return [n for n in names if n not in later] + [n for n in names if n in later]

    def narrowed(self, name: str, drawn: Mapping[str, Any]) -> Dimension:
        """Dimension ``name`` narrowed by the constraints whose ``larger`` is already in ``drawn``."""
        dim = self.dimensions[name]
        for c in self.constraints:
            if c.smaller == name and c.larger in drawn and isinstance(dim, IntRange | FloatRange):
                ceiling = drawn[c.larger] - c.gap
                if isinstance(dim, IntRange):
                    dim = IntRange(dim.low, max(dim.low, min(dim.high, int(ceiling))), dim.step, dim.log)
                else:
                    dim = FloatRange(dim.low, max(dim.low, min(dim.high, float(ceiling))), dim.step, dim.log)
        return dim

    def satisfied(self, params: Mapping[str, Any]) -> bool:
        return all(params[c.smaller] + c.gap <= params[c.larger] for c in self.constraints)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, dim in self.dimensions.items():
            if isinstance(dim, Choice):
                out[name] = {"choice": list(dim.values)}
            else:
                kind = "int" if isinstance(dim, IntRange) else "float"
                out[name] = {kind: [dim.low, dim.high], "step": dim.step, "log": dim.log}
        return {"dimensions": out, "constraints": [f"{c.smaller} + {c.gap} <= {c.larger}" for c in self.constraints]}
