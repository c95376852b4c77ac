"""Scenario: everything a simulation run depends on, in SI units.

A :class:`Scenario` is a frozen value: build one in Python, load one from a
TOML file in ``data/scenarios/`` (:meth:`Scenario.from_toml`), derive variants
with :meth:`Scenario.replace` or with ``field=value`` strings from the command
line (:meth:`Scenario.with_overrides`). The seed is part of the scenario, so a
scenario *is* a result: run it twice, get the same numbers.

Rules of this module:

* Every field is checked when the scenario is built. A bad value raises
  ``ValueError`` naming the field and the allowed range; an unknown field
  (in TOML or ``--set``) lists the fields there are.
* Times are seconds, rates are per second, sizes are counts of keys.
* ``None`` means "no limit" (``ttl_s``, ``cache_capacity``) or "until the end"
  (a fault's ``end_s``). TOML has no null: leave the field out, or write
  ``"none"``.
* The policy is named, and :data:`wtsim.policies.POLICIES` maps the name to the
  module of generators that implements it; the simulator runs those
  generators, the very code of the library.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..policies import policy_module
from .faults import Fault
from .workload import Burst, Request


SERVICE_KINDS = ("exponential", "deterministic")

SCENARIO_DIR: Traversable = files("wtsim.data") / "scenarios"
"""Where bare scenario names are looked up: ``data/scenarios``, installed as package data."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """A simulation run: workload, policy, cache, database and faults. Seconds and per-second."""

    name: str = "custom"
    duration_s: float = 10.0  # simulated time; arrivals stop here, requests in flight finish
    warmup_s: float = 1.0  # requests arriving in [0, warmup_s) are left out of the totals
    seed: int = 0  # every random stream is spawned from it: same seed, same result
    # -- workload
    read_rate: float = 1000.0  # Poisson arrivals per second, over all app servers
    write_rate: float = 10.0
    n_keys: int = 1000  # keys 1 .. n_keys, every one a row at version 1 from the start
    zipf_alpha: float = 1.0  # P(key k) ∝ k**-alpha, for reads and writes; 0 is uniform
    app_servers: int = 1  # each with its own breaker, repair memory and counters
    bursts: tuple[Burst, ...] = ()  # windows that multiply the rates
    requests: tuple[Request, ...] = ()  # scripted requests, on top of the Poisson ones
    # -- policy
    policy: str = "write-through"  # a name in POLICIES
    versioned: bool = False  # compare-and-set on the row's version (False: the article's SET)
    outage_repair: bool = True  # invalidate keys written while the cache was unreachable
    breaker: bool = True  # a circuit breaker per app server, on the simulated clock
    breaker_threshold: int = 3  # consecutive failures that open it
    breaker_cooldown_s: float = 5.0  # how long it stays open before one probe
    tombstone_ttl_s: float = 5.0  # how long an invalidation refuses older sets (versioned)
    # -- cache
    ttl_s: float | None = None  # set on write and populate, not renewed by hits; None: no expiry
    cache_capacity: int | None = None  # in keys, LRU eviction; None: unlimited
    prefill: bool = False  # start with every key cached (the most popular ones if it is small)
    cache_rtt_s: float = 0.0005  # one round trip to the cache
    cache_timeout_s: float = 0.25  # what an op costs when the cache does not answer
    cache_connect_timeout_s: float | None = None  # ... when it is unreachable; None: cache_timeout_s
    # -- database
    db_read_s: float = 0.002  # mean service time of a read
    db_write_s: float = 0.005  # mean service time of a write (with its commit)
    db_connections: int = 20  # the pool: more concurrent queries wait for a connection
    service: str = "exponential"  # service time distribution, or "deterministic" (exactly the mean)
    # -- faults
    faults: tuple[Fault, ...] = field(default=())

    def __post_init__(self) -> None:
        for f in fields(self):
            value = _check_field(f.name, getattr(self, f.name))
            object.__setattr__(self, f.name, value)  # normalised: ints as floats, lists as tuples
        if self.warmup_s >= self.duration_s:
            raise ValueError(f"warmup_s must be < duration_s ({self.duration_s}), got {self.warmup_s}")
        for i, fault in enumerate(self.faults):
            if fault.start_s >= self.duration_s:
                raise ValueError(f"faults[{i}].start_s must be < duration_s ({self.duration_s}), got {fault.start_s}")
            if fault.servers is not None and fault.servers > self.app_servers:
                raise ValueError(
                    f"faults[{i}].servers must be <= app_servers ({self.app_servers}), got {fault.servers}"
                )
        for i, request in enumerate(self.requests):
            if request.at_s >= self.duration_s:
                raise ValueError(f"requests[{i}].at_s must be < duration_s ({self.duration_s}), got {request.at_s}")
            if request.key > self.n_keys:
                raise ValueError(f"requests[{i}].key must be in 1..n_keys ({self.n_keys}), got {request.key}")
            if request.server >= self.app_servers:
                raise ValueError(
                    f"requests[{i}].server must be in 0..app_servers-1 ({self.app_servers - 1}), got {request.server}"
                )

    # -- building variants ---------------------------------------------------------------------

    def replace(self, **changes: Any) -> Scenario:
        """A copy with ``changes`` applied and checked."""
        _check_names(changes, "Scenario.replace()")
        return dataclasses.replace(self, **changes)

    def with_overrides(self, assignments: Iterable[str]) -> Scenario:
        """A copy with ``"field=value"`` strings applied (the CLI's ``--set``)."""
        return self.replace(**dict(parse_override(text) for text in assignments))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "scenario") -> Scenario:
        """Build a scenario from plain data (TOML tables, JSON), checking every name."""
        _check_names(data, source)
        values = dict(data)
        for name in ("ttl_s", "cache_capacity", "cache_connect_timeout_s"):
            if isinstance(values.get(name), str) and values[name].lower() == "none":
                values[name] = None
        return cls(**values)

    @classmethod
    def from_toml(cls, path: str | Path | Traversable) -> Scenario:
        """Load a scenario file; its ``name`` defaults to the file's stem."""
        path = Path(path) if isinstance(path, str) else path
        with path.open("rb") as f:
            try:
                data = tomllib.load(f)
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"{path}: not valid TOML: {exc}") from None
        data.setdefault("name", Path(path.name).stem)
        return cls.from_dict(data, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """The scenario as JSON-safe plain data (``from_dict`` reads it back)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = [item.to_dict() for item in value]
            out[f.name] = value
        return out

    @property
    def measured_s(self) -> float:
        """The length of the window the metrics cover: ``duration_s - warmup_s``."""
        return self.duration_s - self.warmup_s


# -- loading by name -----------------------------------------------------------------------------


def scenario_names() -> list[str]:
    """The scenarios in ``data/scenarios``, by name."""
    return sorted(Path(p.name).stem for p in SCENARIO_DIR.iterdir() if p.name.endswith(".toml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A scenario from a TOML path, or from a bare name looked up in ``data/scenarios``."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists() or len(path.parts) > 1:
        if not path.is_file():
            raise FileNotFoundError(f"scenario file not found: {path}")
        return Scenario.from_toml(path)
    candidate = SCENARIO_DIR / f"{name_or_path}.toml"
    if not candidate.is_file():
        known = ", ".join(scenario_names()) or "none"
        raise FileNotFoundError(f"unknown scenario {str(name_or_path)!r}; known scenarios: {known}")
    return Scenario.from_toml(candidate)


# -- field=value overrides -----------------------------------------------------------------------

FIELD_NAMES = tuple(f.name for f in fields(Scenario))
_HINTS = typing.get_type_hints(Scenario)
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def parse_override(text: str) -> tuple[str, Any]:
    """``"ttl_s=30"`` -> ``("ttl_s", 30.0)``: the value converted to the field's type.

    ``none`` is ``None`` for the fields that allow it; booleans are
    ``true/false/yes/no/on/off/1/0``; tuple fields (``faults``, ``bursts``,
    ``requests``) take a TOML inline array of tables.
    """
    name, sep, raw = text.partition("=")
    name, raw = name.strip(), raw.strip()
    if not sep or not name:
        raise ValueError(f"expected field=value, got {text!r}")
    _check_names({name: None}, "--set")
    return name, convert(name, raw)


def convert(name: str, raw: str) -> Any:
    """Convert the string ``raw`` to the type of Scenario field ``name``."""
    hint = _HINTS[name]
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    nullable = type(None) in options
    kind = next(t for t in options if t is not type(None))
    if nullable and raw.lower() in ("none", "null"):
        return None
    if typing.get_origin(kind) is tuple:
        try:
            return tomllib.loads(f"value = {raw}")["value"]
        except tomllib.TOMLDecodeError:
            raise ValueError(
                f"{name} takes a TOML inline array of tables, e.g. "
                f'{name}=[{{kind="cache-down", start_s=2, end_s=4}}]; got {raw!r}'
            ) from None
    if kind is bool:
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ValueError(f"{name} must be true or false, got {raw!r}")
    if kind is int:
        try:
            number = float(raw)
        except ValueError:
            number = math.nan
        if not number.is_integer():
            raise ValueError(f"{name} must be an integer{' or none' if nullable else ''}, got {raw!r}")
        return int(number)
    if kind is float:
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{name} must be a number{' or none' if nullable else ''}, got {raw!r}") from None
    return raw


# -- checking --------------------------------------------------------------------------------------


def _check_names(names: Iterable[str], source: str) -> None:
    unknown = [name for name in names if name not in FIELD_NAMES]
    if unknown:
        raise ValueError(
            f"unknown field {unknown[0]!r} in {source}; allowed fields: {', '.join(FIELD_NAMES)}"
        )


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _number(name: str, value: object, *, minimum: float = 0.0, strict: bool = False,
            nullable: bool = False, unit: str = "") -> float | None:
    if value is None and nullable:
        return None
    ok = _is_number(value) and (value > minimum if strict else value >= minimum)
    if not ok:
        bound = f"{'>' if strict else '>='} {minimum:g}"
        raise ValueError(
            f"{name} must be a number {bound}{' ' + unit if unit else ''}{' or None' if nullable else ''}, got {value!r}"
        )
    return float(value)  # type: ignore[arg-type]


def _integer(name: str, value: object, *, minimum: int, nullable: bool = False) -> int | None:
    if value is None and nullable:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}{' or None' if nullable else ''}, got {value!r}")
    return value


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def _items(name: str, value: object, cls: type) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{name} must be a list of {cls.__name__} (or of tables), got {value!r}")
    allowed = [f.name for f in fields(cls)]
    items = []
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
        items.append(item)
    return tuple(items)


def _check_field(name: str, value: Any) -> Any:
    """The checked, normalised value of one field (ValueError naming it when out of range)."""
    match name:
        case "name":
            if not isinstance(value, str) or not value:
                raise ValueError(f"name must be a non-empty string, got {value!r}")
            return value
        case "duration_s" | "breaker_cooldown_s" | "tombstone_ttl_s" | "cache_timeout_s":
            return _number(name, value, strict=True, unit="s")
        case "warmup_s" | "cache_rtt_s" | "db_read_s" | "db_write_s":
            return _number(name, value, unit="s")
        case "read_rate" | "write_rate":
            return _number(name, value, unit="per second")
        case "zipf_alpha":
            return _number(name, value)
        case "ttl_s" | "cache_connect_timeout_s":
            return _number(name, value, strict=True, nullable=True, unit="s")
        case "seed":
            return _integer(name, value, minimum=0)
        case "n_keys" | "app_servers" | "breaker_threshold" | "db_connections":
            return _integer(name, value, minimum=1)
        case "cache_capacity":
            return _integer(name, value, minimum=1, nullable=True)
        case "versioned" | "outage_repair" | "breaker" | "prefill":
            return _flag(name, value)
        case "policy":
            policy_module(value)  # raises, listing the registry's names
            return value
        case "service":
            if value not in SERVICE_KINDS:
                raise ValueError(f"service must be one of {', '.join(map(repr, SERVICE_KINDS))}; got {value!r}")
            return value
        case "faults":
            return _items(name, value, Fault)
        case "bursts":
            return _items(name, value, Burst)
        case "requests":
            return _items(name, value, Request)
    raise AssertionError(f"no check for field {name}")  # pragma: no cover
