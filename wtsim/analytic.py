"""Closed-form companions of the simulator.

Each model here answers one of the simulator's questions on the back of an
envelope. The simulator checks them, and they check the simulator: where both
make the same assumptions they must agree, and where they disagree the
difference is the lesson.

**The article's arithmetic** (:func:`article_db_load`). With write-through,
every write goes to the database and then to the cache, and every read asks the
cache first; a read that misses goes to the database and populates the cache.
So the database serves ``writes + (1 - hit_ratio) * reads`` queries per second
instead of ``reads + writes``. The article's "10,000 reads/s and 100 writes/s
give 100 database queries/s, a 99% reduction" is this formula at
``hit_ratio = 1``: every read hits, forever. Real hit ratios depend on key
popularity, cache capacity, TTL and warm-up, which is what the next two models
estimate.

**Che's approximation for LRU** (:func:`che_characteristic_time`,
:func:`che_hit_ratio`). It assumes the *independent reference model*: each
request names key ``k`` with a fixed probability ``p_k``, independently of
every other request. An LRU cache holding ``capacity`` items evicts a key once
``capacity`` other distinct keys have been requested since its last request.
Che et al. (2002) replace that random time by one constant ``T_C``, the
*characteristic time*, the same for every key: a key is in the cache exactly
when it was requested within the last ``T_C`` requests, which happens with
probability ``1 - exp(-p_k T_C)``. ``T_C`` is fixed by asking that the cache
hold ``capacity`` items on average, and the hit ratio is the popularity-weighted
sum of those probabilities. The approximation is remarkably accurate for
caches of more than a handful of items (Fricker, Robert and Roberts, 2012,
explain why). It says nothing about cold start, changing popularity, bursts or
scans, TTLs, or writes (a write-through write puts its key into the cache,
which only helps later reads).

**TTL renewal** (:func:`ttl_hit_ratio`). A TTL is set when a miss populates the
entry and is *not* extended by hits, as with ``SET key value EX ttl``. Reads of
key ``k`` form a Poisson process of rate ``lambda_k``, the cache is unlimited
and there are no writes. After a miss the entry lives ``T`` seconds and serves
``lambda_k T`` hits on average; because Poisson arrivals are memoryless, the
next read after expiry is a miss that starts an identical cycle. One miss per
``1 + lambda_k T`` reads gives ``h_k = lambda_k T / (1 + lambda_k T)``. (A
sliding TTL, renewed on every read, would instead give
``1 - exp(-lambda_k T)``.) Writes, which in write-through re-set the entry and
its TTL, make the real hit ratio higher; evictions make it lower.

**Erlang C** (:func:`erlang_c`, :func:`erlang_c_mean_wait`). The database
connection pool as an M/M/c queue: Poisson arrivals at rate ``lambda``, ``c``
connections, exponentially distributed service times of mean ``s``, and an
unbounded first-come-first-served queue. The offered load is ``a = lambda s``
(in Erlangs) and the utilisation ``rho = a / c`` must stay below 1, or the
queue grows without bound. Erlang C is the probability that a query has to wait
for a connection; the mean wait follows from it. Real query times vary less
than an exponential, so real waits are usually shorter (for constant service
times, roughly half). The formula is evaluated through the Erlang B recursion,
which never forms ``a**c / c!`` and so stays finite for hundreds of servers.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np

__all__ = [
    "article_db_load",
    "che_characteristic_time",
    "che_hit_ratio",
    "erlang_c",
    "erlang_c_mean_wait",
    "mm_c_utilisation",
    "ttl_hit_ratio",
    "zipf_popularity",
]

# How far a popularity vector's sum may drift from 1 (float rounding, not a wrong model).
_SUM_TOLERANCE = 1e-6


# --- validation -----------------------------------------------------------------------------


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def _check_real(name: str, value: object, *, positive: bool = False) -> float:
    bound = "> 0" if positive else ">= 0"
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a finite number {bound}, got {value}")
    return float(value)


def _check_popularity(popularity: object) -> np.ndarray:
    p = np.asarray(popularity, dtype=np.float64)
    if p.ndim != 1 or p.size == 0:
        raise ValueError(f"popularity must be a non-empty 1-D array, got shape {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError("popularity must hold finite probabilities >= 0")
    total = float(p.sum())
    if abs(total - 1.0) > _SUM_TOLERANCE:
        raise ValueError(f"popularity must sum to 1 (normalise it as p / p.sum()), got {total!r}")
    return p


# --- key popularity -------------------------------------------------------------------------


def zipf_popularity(n_keys: int, alpha: float) -> np.ndarray:
    """Request probabilities ``P(k) ∝ k**-alpha`` of keys ``k = 1..n_keys``.

    The most popular key comes first. ``alpha = 0`` is uniform; web and database
    workloads are often near ``alpha = 0.6..1``. The result is float64 and sums to 1,
    so it can be handed straight to a seeded ``rng.choice(n_keys, p=...)``.
    """
    n = _check_int("n_keys", n_keys, 1)
    a = _check_real("alpha", alpha)
    if a == 0:
        return np.full(n, 1.0 / n)
    # Key 1 has weight 1, every other weight is smaller: nothing can overflow.
    weights = np.arange(1, n + 1, dtype=np.float64) ** -a
    return weights / weights.sum()


# --- the article's arithmetic ---------------------------------------------------------------


def article_db_load(read_rate: float, write_rate: float, hit_ratio: float = 1.0) -> dict:
    """Database and cache operations per second, without a cache and with write-through.

    Returns ``without_cache`` (reads + writes), ``with_cache`` (writes + missed reads),
    ``reduction`` (``1 - with_cache / without_cache``, a fraction; 0 when there is no
    load at all) and ``cache_ops`` (reads + writes + the populates that follow misses).

    The default ``hit_ratio = 1`` is the article's silent assumption behind its
    "10,000 reads/s + 100 writes/s -> 100 database queries/s, a 99% reduction".
    Pass a hit ratio from :func:`che_hit_ratio`, :func:`ttl_hit_ratio` or the
    simulator to see what the reduction really is.
    """
    reads = _check_real("read_rate", read_rate)
    writes = _check_real("write_rate", write_rate)
    if isinstance(hit_ratio, bool) or not isinstance(hit_ratio, Real) or not 0 <= hit_ratio <= 1:
        raise ValueError(f"hit_ratio must be a number in [0, 1], got {hit_ratio!r}")
    misses = reads - float(hit_ratio) * reads  # (1 - h) * reads, keeping round numbers round
    without_cache = reads + writes
    with_cache = writes + misses
    return {
        "without_cache": without_cache,
        "with_cache": with_cache,
        "reduction": 1.0 - with_cache / without_cache if without_cache else 0.0,
        "cache_ops": reads + writes + misses,
    }


# --- Che's approximation for LRU ------------------------------------------------------------


def _expected_occupancy(p: np.ndarray, t: float) -> float:
    """Expected number of cached keys if each key stays ``t`` requests after its last use."""
    # -expm1(-x) is 1 - exp(-x) without losing digits when x is tiny.
    return float(-np.expm1(-p * t).sum())


def _solve_characteristic_time(p: np.ndarray, capacity: int) -> float:
    """The root of ``occupancy(t) = capacity``, by Newton's method kept inside a bracket.

    ``occupancy`` is increasing and concave, so Newton steps taken from below never
    overshoot; the bracket and a bisection fallback guard against rounding.
    """

    def f(t: float) -> float:
        return _expected_occupancy(p, t) - capacity

    # occupancy(t) <= t (since 1 - exp(-x) <= x), so the root is at least `capacity`.
    lo, hi = 0.0, float(capacity)
    while f(hi) < 0:
        lo, hi = hi, 2.0 * hi
    t = lo
    for _ in range(200):
        value = f(t)
        if value == 0:
            return t
        if value < 0:
            lo = t
        else:
            hi = t
        if hi - lo <= 1e-13 * hi:
            break
        slope = float((p * np.exp(-p * t)).sum())
        newton = t - value / slope if slope > 0 else math.nan
        if not lo < newton < hi:
            t = 0.5 * (lo + hi)
        elif abs(newton - t) <= 1e-13 * newton:
            return newton
        else:
            t = newton
    return 0.5 * (lo + hi)


def che_characteristic_time(popularity: np.ndarray, capacity: int) -> float:
    """Che's characteristic time ``T_C`` of an LRU cache of ``capacity`` items, in requests.

    ``T_C`` solves ``sum_k (1 - exp(-p_k T_C)) = capacity``: a key requested less
    than ``T_C`` requests ago is (approximately) still in the cache. Returns
    ``inf`` when every key that is ever requested fits, and 0 for an empty cache.
    """
    p = _check_popularity(popularity)
    c = _check_int("capacity", capacity, 0)
    if c == 0:
        return 0.0
    if c >= np.count_nonzero(p):
        return math.inf
    return _solve_characteristic_time(p[p > 0], c)  # keys never requested never occupy


def che_hit_ratio(popularity: np.ndarray, capacity: int | None) -> float:
    """Steady-state hit ratio of an LRU cache of ``capacity`` items, by Che's approximation.

    ``sum_k p_k (1 - exp(-p_k T_C))``. ``capacity=None`` means unlimited; an
    unlimited cache, or one that holds every key, misses only while it warms up,
    so its steady-state hit ratio is 1.
    """
    p = _check_popularity(popularity)
    if capacity is None:
        return 1.0
    t = che_characteristic_time(p, capacity)
    if math.isinf(t):
        return 1.0
    return float((p * -np.expm1(-p * t)).sum())


# --- TTL renewal ----------------------------------------------------------------------------


def ttl_hit_ratio(popularity: np.ndarray, read_rate: float, ttl_s: float | None) -> float:
    """Hit ratio with a TTL set on each miss and not renewed by hits (``SET ... EX``).

    Poisson reads at ``read_rate`` per second spread over the keys by ``popularity``,
    unlimited capacity, no writes: key ``k`` hits with ``lambda_k T / (1 + lambda_k T)``
    where ``lambda_k = p_k * read_rate``. ``ttl_s=None`` (entries never expire) gives 1.
    """
    p = _check_popularity(popularity)
    rate = _check_real("read_rate", read_rate)
    if ttl_s is None:
        return 1.0
    ttl = _check_real("ttl_s", ttl_s)
    hits_per_cycle = p * rate * ttl  # expected hits between one miss and the expiry
    return float((p * hits_per_cycle / (1.0 + hits_per_cycle)).sum())


# --- Erlang C -------------------------------------------------------------------------------


def mm_c_utilisation(servers: int, arrival_rate: float, mean_service_s: float) -> float:
    """Utilisation ``rho = arrival_rate * mean_service_s / servers`` of an M/M/c queue.

    The fraction of time each server (database connection) is busy; the queue is
    stable only below 1. Values of 1 or more are returned, not rejected, so they
    can be printed.
    """
    c = _check_int("servers", servers, 1)
    lam = _check_real("arrival_rate", arrival_rate)
    s = _check_real("mean_service_s", mean_service_s, positive=True)
    return lam * s / c


def _offered_load(servers: int, arrival_rate: float, mean_service_s: float) -> tuple[int, float]:
    """Validated ``(c, a)``: server count and offered load in Erlangs, for a stable queue."""
    rho = mm_c_utilisation(servers, arrival_rate, mean_service_s)
    if rho >= 1:
        raise ValueError(
            f"utilisation (arrival_rate * mean_service_s / servers) must be < 1 "
            f"for a stable queue, got {rho:.4g}"
        )
    return int(servers), float(arrival_rate) * float(mean_service_s)


def erlang_c(servers: int, arrival_rate: float, mean_service_s: float) -> float:
    """Probability that an arrival waits for a server in an M/M/c queue (Erlang C).

    Computed from the Erlang B recursion ``B_k = a B_{k-1} / (k + a B_{k-1})``,
    which stays finite for hundreds of servers, then ``C = c B / (c - a (1 - B))``.
    Raises ``ValueError`` when the utilisation is 1 or more.
    """
    c, a = _offered_load(servers, arrival_rate, mean_service_s)
    blocking = 1.0  # Erlang B with zero servers: everyone is blocked
    for k in range(1, c + 1):
        blocking = a * blocking / (k + a * blocking)
    return c * blocking / (c - a * (1.0 - blocking))


def erlang_c_mean_wait(servers: int, arrival_rate: float, mean_service_s: float) -> float:
    """Mean time an arrival spends queueing for a server, service excluded, in seconds.

    ``Wq = C / (c mu - lambda)`` with ``mu = 1 / mean_service_s``.
    """
    c, a = _offered_load(servers, arrival_rate, mean_service_s)
    return erlang_c(servers, arrival_rate, mean_service_s) * mean_service_s / (c - a)
