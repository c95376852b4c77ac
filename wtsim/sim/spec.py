"""Declared fields: one line gives a field's type, range, unit, what ``None`` means and why it is there.

:class:`~wtsim.sim.scenario.Scenario` declares each of its fields with one of
the helpers below, e.g. ``ttl_s: float | None = number(None, "...", strict=True,
none="no expiry")``. The helper puts a :class:`Spec` into the field's metadata,
and that one declaration then

* checks and normalises a value (:meth:`Spec.check`: ints given for a number
  become floats, lists become tuples), raising ``ValueError`` that names the
  field and the allowed range, unit included;
* reads TOML (:meth:`Spec.load`: ``"none"`` is None where None is allowed);
* parses ``--set`` and ``--vary`` strings (:meth:`Spec.parse`) and says whether
  a field can be varied at all (:attr:`Spec.varies`).
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping

_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")  # what --set takes for a flag


@dataclass(frozen=True, slots=True)
class Spec:
    """One field's declaration: its kind, range, unit, what ``None`` means, and a line on why it is there."""

    kind: str  # "number", "integer", "flag", "text", "path", "choice" or "items"
    doc: str
    minimum: float = 0
    strict: bool = False  # the minimum itself is not allowed
    unit: str = ""
    none: str | None = None  # what None means; None: the field needs a value
    options: tuple[str, ...] | Callable[[str], object] = ()  # choice: the names, or a lookup that raises
    cls: type | None = None  # items: the dataclass of each item

    @property
    def nullable(self) -> bool:
        """Is None allowed? Only where the declaration says what it means."""
        return self.none is not None

    @property
    def varies(self) -> bool:
        """Can ``--vary`` list values for it? Not a list of tables: its commas would split it."""
        return self.kind != "items"

    @property
    def allowed(self) -> str:
        """The range, as error messages say it: ``"a number > 0 s or None"``."""
        bound = f"{'>' if self.strict else '>='} {self.minimum:g}"
        names = self.options if isinstance(self.options, tuple) else ()
        text = {
            "number": f"a number {bound}" + (f" {self.unit}" if self.unit else ""),
            "integer": f"an integer {bound}",
            "flag": "true or false",
            "text": "a non-empty string",
            "path": "a file path",
            "choice": f"one of {', '.join(map(repr, names))}" if names else "a registered name",
            "items": f"a list of {getattr(self.cls, '__name__', '?')} (or of tables)",
        }[self.kind]
        return text + (" or None" if self.nullable else "")

    def check(self, name: str, value: Any) -> Any:
        """``value`` checked and normalised (ints as floats, lists as tuples); ValueError naming ``name``."""
        if value is None and self.nullable:
            return None
        match self.kind:
            case "number":
                if _is_number(value) and (value > self.minimum if self.strict else value >= self.minimum):
                    return float(value)
            case "integer":
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                if not isinstance(value, bool) and isinstance(value, int) and value >= self.minimum:
                    return value
            case "flag" if isinstance(value, bool):
                return value
            case "text" if isinstance(value, str) and value:
                return value
            case "path" if isinstance(value, (str, os.PathLike)) and os.fspath(value):
                return os.fspath(value)
            case "choice" if callable(self.options):
                self.options(value)  # a registry's lookup: it raises, listing its names
                return value
            case "choice" if value in self.options:
                return value
            case "items" if isinstance(value, (list, tuple)):
                return _items(name, value, self.cls)  # type: ignore[arg-type]
        got = "; got" if self.kind == "choice" else ", got"
        raise ValueError(f"{name} must be {self.allowed}{got} {value!r}")

    def load(self, value: Any) -> Any:
        """A value read from TOML or JSON: TOML has no null, so ``"none"`` is None where None is allowed."""
        return None if self.nullable and isinstance(value, str) and value.lower() == "none" else value

    def parse(self, name: str, raw: str) -> Any:
        """The string ``raw`` (from ``--set`` or ``--vary``) as this field's type; :meth:`check` follows.

        ``none`` or ``null`` is None where None is allowed; a flag takes true/false, yes/no, on/off or
        1/0; a list of tables is a TOML inline array.
        """
        if self.nullable and raw.lower() in ("none", "null"):
            return None
        try:
            match self.kind:
                case "number":
                    return float(raw)
                case "integer" if float(raw).is_integer():
                    return int(float(raw))
                case "flag" if raw.lower() in _TRUE + _FALSE:
                    return raw.lower() in _TRUE
                case "items":
                    return tomllib.loads(f"value = {raw}")["value"]
                case "text" | "path" | "choice":
                    return raw
        except ValueError:  # not a number, or not TOML (TOMLDecodeError is a ValueError)
            pass
        if self.kind == "items":
            raise ValueError(f"{name} takes a TOML inline array of tables, e.g. "
                             f'{name}=[{{kind="cache-down", start_s=2, end_s=4}}]; got {raw!r}')
        what = {"number": "a number", "integer": "an integer", "flag": "true or false"}[self.kind]
        raise ValueError(f"{name} must be {what}{' or none' if self.nullable else ''}, got {raw!r}")


def _declare(default: Any, *spec: Any, **options: Any) -> Any:
    return field(default=default, metadata={"spec": Spec(*spec, **options)})


def number(default: float | None, doc: str, *, minimum: float = 0, strict: bool = False, unit: str = "s",
           none: str | None = None) -> Any:
    """A finite real ``>= minimum`` (``> minimum`` if ``strict``) in ``unit``; ``none``: what None means."""
    return _declare(default, "number", doc, minimum, strict, unit, none)


def integer(default: int | None, doc: str, *, minimum: int = 0, none: str | None = None) -> Any:
    """A whole number ``>= minimum`` (``2.0`` is read as ``2``); ``none``: what None means."""
    return _declare(default, "integer", doc, minimum, none=none)


def flag(default: bool, doc: str) -> Any:
    """True or false."""
    return _declare(default, "flag", doc)


def text(default: str, doc: str) -> Any:
    """A non-empty string."""
    return _declare(default, "text", doc)


def path(default: str | None, doc: str, *, none: str | None = None) -> Any:
    """A file path, kept as a string (a :class:`os.PathLike` becomes one); ``none``: what None means."""
    return _declare(default, "path", doc, none=none)


def choice(default: str, options: tuple[str, ...] | Callable[[str], object], doc: str) -> Any:
    """One of ``options``: a tuple of names, or a registry's lookup that raises ValueError listing its names."""
    return _declare(default, "choice", doc, options=options)


def items(cls: type, doc: str) -> Any:
    """A tuple of ``cls`` (tables become ``cls``), empty by default; never varied: one per scenario file."""
    return _declare((), "items", doc, cls=cls)


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _items(name: str, value: list | tuple, cls: type) -> tuple:
    """Each item as a ``cls``: a table (dict) is turned into one, checked by ``cls``; errors say which item."""
    allowed = [f.name for f in fields(cls)]
    out = []
    for i, item in enumerate(value):
        if isinstance(item, Mapping):
            unknown = [key for key in item if key not in allowed]
            if unknown:
                raise ValueError(f"unknown field {unknown[0]!r} in {name}[{i}]; allowed: {', '.join(allowed)}")
            try:
                item = cls(**item)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{name}[{i}]: {exc}") from None
        elif not isinstance(item, cls):
            raise ValueError(f"{name}[{i}] must be a {cls.__name__} or a table, got {item!r}")
        out.append(item)
    return tuple(out)
