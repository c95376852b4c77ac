"""Scenario: everything a simulation run depends on, in SI units.

A :class:`Scenario` is a frozen value: build one in Python, load one from a
TOML file in ``data/scenarios/`` (:meth:`Scenario.from_toml`), derive variants
with :meth:`Scenario.replace` or with ``field=value`` strings from the command
line (:meth:`Scenario.with_overrides`). The seed is part of the scenario, so a
scenario *is* a result: run it twice, get the same numbers.

Rules of this module:

* Each field is declared once, with a helper of :mod:`wtsim.sim.spec`
  (``number``, ``integer``, ``flag``, ``text``, ``choice``, ``items``): its
  type, range, unit, what ``None`` means and a one-line doc. That declaration
  checks the value when the scenario is built, reads TOML and ``--set``/``--vary``
  strings, and words the errors: a bad value raises ``ValueError`` naming the
  field and the allowed range. Adding a field is one declaration;
  :data:`FIELD_SPECS` maps each name to its declaration.
* An unknown field (in TOML or ``--set``) lists the fields there are.
* Times are seconds, rates are per second, sizes are counts of keys.
* ``None`` is allowed only where the declaration says what it means (``ttl_s``:
  no expiry, ``cache_capacity``: unlimited; a fault's ``end_s``: until the end).
  TOML has no null: leave the field out, or write ``"none"``.
* Checks across fields (``warmup_s < duration_s``, faults and scripted requests
  that fit the run) are in :meth:`Scenario.__post_init__`.
* The policy is named, and :data:`wtsim.policies.POLICIES` maps the name to the
  module of generators that implements it; the simulator runs those
  generators, the very code of the library.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, fields
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..policies import policy_module
from .faults import Fault
from .spec import Spec, choice, flag, integer, items, number, path, text
from .workload import Burst, Request


SERVICE_KINDS = ("exponential", "deterministic")
ABANDONED = ("run", "leave-queue")

SCENARIO_DIR: Traversable = files("wtsim.data") / "scenarios"
"""Where bare scenario names are looked up: ``data/scenarios``, installed as package data."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """A simulation run: workload, policy, cache, database and faults. Seconds and per-second."""

    name: str = text("custom", "what the run is called; from_toml defaults it to the file's stem")
    duration_s: float = number(10.0, "simulated time; arrivals stop here, requests in flight finish", strict=True)
    warmup_s: float = number(1.0, "requests arriving in [0, warmup_s) are left out of the totals")
    seed: int = integer(0, "every random stream is spawned from it: same seed, same result")
    # -- workload
    read_rate: float = number(1000.0, "Poisson read arrivals, over all app servers", unit="per second")
    write_rate: float = number(10.0, "Poisson write arrivals, over all app servers", unit="per second")
    n_keys: int = integer(1000, "keys 1 .. n_keys, every one a row at version 1 from the start (with a trace: "
                          "its distinct keys instead)", minimum=1)
    zipf_alpha: float = number(1.0, "P(key k) ∝ k**-alpha, for reads and writes; 0 is uniform", unit="")
    app_servers: int = integer(1, "each with its own breaker, repair memory and counters", minimum=1)
    bursts: tuple[Burst, ...] = items(Burst, "windows that multiply the rates")
    requests: tuple[Request, ...] = items(Request, "scripted requests, on top of the Poisson ones")
    trace: str | None = path(None, "a CSV (time_s,key,op) replayed instead of the Poisson workload, up to duration_s; "
                             "read_rate, write_rate, n_keys, zipf_alpha and bursts are then unused (wtsim.sim.trace)",
                             none="the Poisson and Zipf workload")
    # -- clients
    request_timeout_s: float | None = number(None, "a client gives up on a request after this long",
                                             strict=True, none="clients wait forever")
    retries: int = integer(0, "how often a client retries a request that timed out or failed: a new request")
    retry_backoff_s: float = number(0.0, "the wait before a first retry, doubled for each next one")
    retry_budget: float | None = number(None, "retries allowed per first attempt, per app server (10 banked at most)",
                                        unit="", none="unlimited")
    abandoned_queries: str = choice("run", ABANDONED, "a timed-out request's database query: it still runs, "
                                    "or leaves the connection queue if it waits there")
    # -- policy
    policy: str = choice("write-through", policy_module, "a pattern name in wtsim.policies.POLICIES")
    versioned: bool = flag(False, "compare-and-set on the row's version (false: the article's SET); write-behind always has versions")
    outage_repair: bool = flag(True, "invalidate keys written while the cache was unreachable")
    breaker: bool = flag(True, "a circuit breaker per app server, on the simulated clock")
    breaker_threshold: int = integer(3, "consecutive failures that open the breaker", minimum=1)
    breaker_cooldown_s: float = number(5.0, "how long the breaker stays open before one probe", strict=True)
    tombstone_ttl_s: float = number(5.0, "how long an invalidation refuses older sets (versioned)", strict=True)
    leases: bool = flag(False, "a reader that misses takes a lease; only its holder populates (memcache)")
    lease_ttl_s: float = number(2.0, "how long a lease lives if its holder never populates", strict=True)
    lease_wait_s: float = number(0.05, "how long a reader waits before asking for another's lease again",
                                 strict=True)
    lease_retries: int = integer(20, "waits before a reader reads the database without populating")
    early_recompute_beta: float | None = number(None, "XFetch: a hit recomputes early, likelier near expiry",
                                                strict=True, unit="", none="off")
    flushers: int = integer(1, "write-behind: flusher processes draining the queue, one consumer each", minimum=1)
    flush_batch: int = integer(100, "write-behind: most entries a flusher writes in one transaction", minimum=1)
    flush_max_delay_s: float = number(0.1, "write-behind: how long a flusher blocks for the first entry of a batch",
                                      strict=True)
    max_pending: int = integer(100_000, "write-behind: queued entries past which a write fails fast", minimum=1)
    # -- cache
    ttl_s: float | None = number(None, "set on write and populate, not renewed by hits",
                                 strict=True, none="no expiry")
    cache_capacity: int | None = integer(None, "in keys, LRU eviction", minimum=1, none="unlimited")
    prefill: bool = flag(False, "start with every key cached (the most popular ones if it is small)")
    cache_rtt_s: float = number(0.0005, "one round trip to the cache")
    cache_timeout_s: float = number(0.25, "what an op costs when the cache does not answer", strict=True)
    cache_connect_timeout_s: float | None = number(None, "what an op costs when the cache is unreachable",
                                                   strict=True, none="the same as cache_timeout_s")
    # -- database
    db_read_s: float = number(0.002, "mean service time of a read")
    db_write_s: float = number(0.005, "mean service time of a write (with its commit)")
    db_write_row_s: float = number(0.0005, "what each further row adds to a batched write (the commit is paid once)")
    db_connections: int = integer(20, "the pool: more concurrent queries wait for a connection", minimum=1)
    service: str = choice("exponential", SERVICE_KINDS, "service time distribution; deterministic: exactly the mean")
    # -- faults
    faults: tuple[Fault, ...] = items(Fault, "windows in which the cache or the database fails, hangs or slows")

    def __post_init__(self) -> None:
        for f in fields(self):  # each by its declaration; normalised: ints as floats, lists as tuples
            object.__setattr__(self, f.name, f.metadata["spec"].check(f.name, getattr(self, f.name)))
        if self.warmup_s >= self.duration_s:
            raise ValueError(f"warmup_s must be < duration_s ({self.duration_s}), got {self.warmup_s}")
        for i, fault in enumerate(self.faults):
            if fault.start_s >= self.duration_s:
                raise ValueError(f"faults[{i}].start_s must be < duration_s ({self.duration_s}), got {fault.start_s}")
            limit, of = (self.flushers, "flushers") if fault.kind == "flusher-down" else (self.app_servers,
                                                                                           "app_servers")
            if fault.servers is not None and fault.servers > limit:
                raise ValueError(f"faults[{i}].servers must be <= {of} ({limit}), got {fault.servers}")
        if self.trace is not None:
            if self.requests:
                raise ValueError("requests cannot be combined with a trace: add them to the trace's CSV")
            if not Path(self.trace).is_file():
                raise ValueError(f"trace: file not found: {self.trace}")
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
        return cls(**{name: FIELD_SPECS[name].load(value) for name, value in data.items()})

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
        if isinstance(data.get("trace"), str) and data["trace"].lower() != "none":  # relative to the file's folder
            data["trace"] = str(Path(str(path)).parent / Path(data["trace"]).expanduser())
        return cls.from_dict(data, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """The scenario as JSON-safe plain data (``from_dict`` reads it back); ``trace`` only when there is one."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "trace" and value is None:  # so a Poisson run's result reads as it always has
                continue
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

FIELD_SPECS: dict[str, Spec] = {f.name: f.metadata["spec"] for f in fields(Scenario)}
"""Field name -> its declaration, in field order."""
FIELD_NAMES = tuple(FIELD_SPECS)


def parse_override(text: str) -> tuple[str, Any]:
    """``"ttl_s=30"`` -> ``("ttl_s", 30.0)``: the value converted to the field's type (:meth:`Spec.parse`)."""
    name, sep, raw = text.partition("=")
    name, raw = name.strip(), raw.strip()
    if not sep or not name:
        raise ValueError(f"expected field=value, got {text!r}")
    _check_names({name: None}, "--set")
    return name, convert(name, raw)


def convert(name: str, raw: str) -> Any:
    """Convert the string ``raw`` to the type of Scenario field ``name``, as its declaration says."""
    return FIELD_SPECS[name].parse(name, raw)


# -- checking --------------------------------------------------------------------------------------


def _check_names(names: Iterable[str], source: str) -> None:
    unknown = [name for name in names if name not in FIELD_NAMES]
    if unknown:
        raise ValueError(
            f"unknown field {unknown[0]!r} in {source}; allowed fields: {', '.join(FIELD_NAMES)}"
        )
