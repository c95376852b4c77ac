"""Caching policies as pure generators, the registry of their names, and the loop that drives them.

A policy yields :mod:`wtsim.ops` operations; a *driver* performs each one and
sends the result back, or throws the failure in. :func:`drive` is that loop for
a synchronous driver (the real cache); :class:`Stepper` runs it one operation
at a time, so that tests and notebooks can interleave two policies by hand;
the simulator runs the same generators inside SimPy processes.

:data:`POLICIES` is the one list of patterns: the simulator, the command line
and the real classes all look a name up here, so a new pattern is one new
module and one line below.
"""

from __future__ import annotations

import types
from typing import Any, Callable

from ..ops import Op
from . import cache_aside, flush, no_cache, write_behind, write_through
from .guarded import Policy
from .state import CacheState, CacheStats, PolicyConfig, Suspects

POLICIES: dict[str, types.ModuleType] = {
    "none": no_cache,
    "cache-aside": cache_aside,
    "write-through": write_through,
    "write-behind": write_behind,
}
"""Pattern name -> the module whose ``read`` and ``write`` generators implement it.

Every ``read`` takes the same arguments. The ``write`` of ``none``,
``cache-aside`` and ``write-through`` runs a database writer; write-behind's
queues a row instead (and :mod:`.flush` writes it later), so a driver calls it
with the row: :class:`wtsim.WriteBehindCache` does, and so does the simulator
(:mod:`wtsim.sim.run`).
"""


def policy_module(name: str) -> types.ModuleType:
    """The module of the pattern called ``name``; ``ValueError`` listing the names otherwise."""
    try:
        return POLICIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"policy must be one of {', '.join(map(repr, POLICIES))}; got {name!r}") from None


__all__ = [
    "POLICIES",
    "CacheState",
    "CacheStats",
    "Policy",
    "PolicyConfig",
    "Stepper",
    "Suspects",
    "cache_aside",
    "drive",
    "flush",
    "no_cache",
    "policy_module",
    "resume",
    "write_behind",
    "write_through",
]


def resume(policy: Policy, outcome: Any = None, failure: BaseException | None = None) -> tuple[bool, Any]:
    """Hand ``policy`` its last op's outcome (or throw in its failure); answer ``(done, value)``.

    ``value`` is the next op the policy asks for, or, when ``done``, what it
    returned. An exception the policy raises propagates. This is the one
    send/throw of the package: :func:`drive` and :class:`Stepper` both use it.
    """
    try:
        op = policy.send(outcome) if failure is None else policy.throw(failure)
    except StopIteration as stop:
        return True, stop.value
    return False, op


def drive(policy: Policy, perform: Callable[[Op], Any]) -> Any:
    """Run ``policy`` to the end, performing each op with ``perform``; return its value.

    :func:`resume`'s send and throw, written out in one loop: this is every real
    call's hot path, and a hit then costs one call of ``perform`` and two resumes.
    """
    send, throw = policy.send, policy.throw
    try:
        op = send(None)
        while True:
            try:
                outcome = perform(op)
            except Exception as exc:  # the policy decides what a failure means
                op = throw(exc)
            else:
                op = send(outcome)
    except StopIteration as stop:
        return stop.value


class Stepper:
    """A policy run one operation at a time.

    ``pending`` is the op the policy waits on; :meth:`step` performs it. When
    the policy returns, ``done`` is true and ``result`` holds its value; when it
    raises, :meth:`step` raises that. ``history`` lists ``(op, outcome)``.
    """

    def __init__(self, policy: Policy, perform: Callable[[Op], Any]) -> None:
        self._policy = policy
        self._perform = perform
        self.pending: Op | None = None
        self.done = False
        self.result: Any = None
        self.history: list[tuple[Op, Any]] = []
        self._advance(None, None)

    def step(self) -> Any:
        """Perform the pending op and run the policy on to its next one; return the op's outcome."""
        if self.done:
            raise RuntimeError("the policy has already finished")
        op = self.pending
        try:
            outcome = self._perform(op)
        except Exception as exc:
            self.history.append((op, exc))
            self._advance(None, exc)
            return exc
        self.history.append((op, outcome))
        self._advance(outcome, None)
        return outcome

    def run(self) -> Any:
        """Step until the policy finishes; return its value."""
        while not self.done:
            self.step()
        return self.result

    def _advance(self, outcome: Any, failure: BaseException | None) -> None:
        try:
            done, value = resume(self._policy, outcome, failure)
        except BaseException:
            self.pending, self.done = None, True
            raise
        if done:
            self.pending, self.done, self.result = None, True, value
        else:
            self.pending = value

    def __repr__(self) -> str:
        state = f"done result={self.result!r}" if self.done else f"pending={self.pending!r}"
        return f"<Stepper {state}>"
