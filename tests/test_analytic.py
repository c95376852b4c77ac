"""The closed-form models, checked against their known properties and tiny brute-force runs."""

from __future__ import annotations

import math
from collections import OrderedDict
from fractions import Fraction

import numpy as np
import pytest

from wtsim.analytic import (
    article_db_load,
    che_characteristic_time,
    che_hit_ratio,
    erlang_c,
    erlang_c_mean_wait,
    mm_c_utilisation,
    ttl_hit_ratio,
    zipf_popularity,
)

# --- brute-force references, small enough to read -------------------------------------------


def simulate_lru(popularity: np.ndarray, capacity: int, requests: int, seed: int) -> float:
    """Hit ratio of a real LRU cache under independent requests, after a warm-up."""
    rng = np.random.default_rng(seed)
    keys = rng.choice(len(popularity), size=requests, p=popularity).tolist()
    warm_up = requests // 10
    cache: OrderedDict[int, None] = OrderedDict()
    hits = 0
    for i, key in enumerate(keys):
        if key in cache:
            cache.move_to_end(key)
            hits += i >= warm_up
        else:
            cache[key] = None
            if len(cache) > capacity:
                cache.popitem(last=False)
    return hits / (requests - warm_up)


def simulate_ttl(popularity: np.ndarray, read_rate: float, ttl_s: float, requests: int, seed: int) -> float:
    """Hit ratio of Poisson reads on a cache whose TTL is set on a miss and kept on a hit."""
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.exponential(1.0 / read_rate, size=requests)).tolist()
    keys = rng.choice(len(popularity), size=requests, p=popularity).tolist()
    warm_up = requests // 10
    expires: dict[int, float] = {}
    hits = 0
    for i, (t, key) in enumerate(zip(times, keys)):
        if t < expires.get(key, -math.inf):
            hits += i >= warm_up
        else:
            expires[key] = t + ttl_s
    return hits / (requests - warm_up)


# --- zipf_popularity ------------------------------------------------------------------------


@pytest.mark.parametrize("n_keys", [1, 2, 1000, 1_000_000])
@pytest.mark.parametrize("alpha", [0.0, 0.8, 1.0, 2.5])
def test_zipf_is_a_float64_distribution(n_keys, alpha):
    """Zipf probabilities are float64, non-negative and sum to 1."""
    p = zipf_popularity(n_keys, alpha)
    assert p.dtype == np.float64 and p.shape == (n_keys,)
    assert np.all(p >= 0)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)


def test_zipf_decreases_for_positive_alpha():
    """With alpha > 0 each key is strictly less popular than the one before it."""
    assert np.all(np.diff(zipf_popularity(500, 0.7)) < 0)


def test_zipf_alpha_zero_is_uniform():
    """alpha = 0 gives every key the same probability."""
    np.testing.assert_array_equal(zipf_popularity(8, 0), np.full(8, 1 / 8))


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0, 1.7])
def test_zipf_ratio_of_first_two_keys(alpha):
    """P(1) / P(2) = 2**alpha."""
    p = zipf_popularity(10, alpha)
    assert p[0] / p[1] == pytest.approx(2**alpha, rel=1e-12)


@pytest.mark.parametrize(
    ("n_keys", "alpha", "field"),
    [(0, 1.0, "n_keys"), (-3, 1.0, "n_keys"), (2.5, 1.0, "n_keys"), (True, 1.0, "n_keys"),
     (10, -0.1, "alpha"), (10, math.nan, "alpha"), (10, math.inf, "alpha")],
)
def test_zipf_rejects_bad_parameters(n_keys, alpha, field):
    """Bad n_keys or alpha raise ValueError naming the parameter."""
    with pytest.raises(ValueError, match=field):
        zipf_popularity(n_keys, alpha)


# --- article_db_load ------------------------------------------------------------------------


def test_article_example_at_full_hit_ratio():
    """10,000 reads/s + 100 writes/s: 10,100 DB queries/s become 100, a 99.0% reduction."""
    load = article_db_load(10_000, 100)
    assert load["without_cache"] == 10_100
    assert load["with_cache"] == 100
    assert round(load["reduction"] * 100, 1) == 99.0
    assert load["cache_ops"] == 10_100


def test_article_example_at_ninety_percent_hits():
    """At a 90% hit ratio the DB serves 1,100 queries/s and the reduction falls to about 89%."""
    load = article_db_load(10_000, 100, hit_ratio=0.9)
    assert load["with_cache"] == pytest.approx(1_100)
    assert load["reduction"] == pytest.approx(1 - 1_100 / 10_100)
    assert load["reduction"] < article_db_load(10_000, 100)["reduction"]
    assert load["cache_ops"] == pytest.approx(11_100)


def test_article_no_load_means_no_reduction():
    """With no traffic at all the reduction is 0, not a division by zero."""
    assert article_db_load(0, 0)["reduction"] == 0.0


@pytest.mark.parametrize(
    ("args", "field"),
    [((-1, 100), "read_rate"), ((100, -1), "write_rate"), ((100, 1, 1.5), "hit_ratio"),
     ((100, 1, -0.1), "hit_ratio")],
)
def test_article_rejects_bad_parameters(args, field):
    """Negative rates and hit ratios outside [0, 1] raise ValueError naming the parameter."""
    with pytest.raises(ValueError, match=field):
        article_db_load(*args)


# --- Che's approximation --------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.0, 0.8])
def test_che_cache_holding_every_key_always_hits(alpha):
    """A capacity of n_keys or more, or None, gives T_C = inf and hit ratio 1."""
    p = zipf_popularity(50, alpha)
    assert che_characteristic_time(p, 50) == math.inf
    assert che_hit_ratio(p, 50) == che_hit_ratio(p, 80) == che_hit_ratio(p, None) == 1.0


def test_che_empty_cache_never_hits():
    """A capacity of 0 gives T_C = 0 and hit ratio 0."""
    p = zipf_popularity(50, 0.8)
    assert che_characteristic_time(p, 0) == 0.0
    assert che_hit_ratio(p, 0) == 0.0


@pytest.mark.parametrize("capacity", [1, 7, 500, 999])
def test_che_uniform_popularity_gives_capacity_over_n(capacity):
    """Under uniform popularity Che's hit ratio is exactly capacity / n_keys."""
    assert che_hit_ratio(zipf_popularity(1000, 0), capacity) == pytest.approx(capacity / 1000, rel=1e-9)


def test_che_characteristic_time_fills_the_cache():
    """T_C solves sum_k (1 - exp(-p_k T_C)) = capacity, even for a million keys."""
    p = zipf_popularity(1_000_000, 1.0)
    for capacity in (10, 10_000, 999_999):
        t = che_characteristic_time(p, capacity)
        assert (1 - np.exp(-p * t)).sum() == pytest.approx(capacity, rel=1e-9)


def test_che_hit_ratio_grows_with_capacity_and_alpha():
    """More capacity, or more skewed popularity, means more hits."""
    p = zipf_popularity(1000, 0.8)
    by_capacity = [che_hit_ratio(p, c) for c in (1, 10, 100, 500, 999)]
    assert by_capacity == sorted(by_capacity) and len(set(by_capacity)) == 5
    by_alpha = [che_hit_ratio(zipf_popularity(1000, a), 50) for a in (0.0, 0.5, 0.8, 1.2)]
    assert by_alpha == sorted(by_alpha) and len(set(by_alpha)) == 4


def test_che_keys_never_requested_take_no_room():
    """Keys of probability 0 never occupy the cache: it is full once the requested keys fit."""
    p = np.array([0.5, 0.5, 0.0, 0.0])
    assert che_characteristic_time(p, 2) == math.inf
    assert che_hit_ratio(p, 1) == pytest.approx(0.5)


def test_che_matches_a_brute_force_lru():
    """Che's hit ratio is within 0.01 of a simulated LRU (200 keys, capacity 20, alpha 0.8)."""
    p = zipf_popularity(200, 0.8)
    simulated = simulate_lru(p, capacity=20, requests=200_000, seed=1)
    assert che_hit_ratio(p, 20) == pytest.approx(simulated, abs=0.01)


@pytest.mark.parametrize(
    ("popularity", "capacity", "field"),
    [([0.5, 0.5], -1, "capacity"), ([0.5, 0.5], 1.5, "capacity"), ([0.5, 0.4], 1, "sum to 1"),
     ([1.5, -0.5], 1, "popularity"), ([], 1, "popularity"), ([[0.5, 0.5]], 1, "popularity")],
)
def test_che_rejects_bad_parameters(popularity, capacity, field):
    """Negative capacity and vectors that are not a distribution raise ValueError."""
    with pytest.raises(ValueError, match=field):
        che_hit_ratio(np.array(popularity), capacity)


# --- TTL renewal ----------------------------------------------------------------------------


@pytest.mark.parametrize(("read_rate", "ttl_s"), [(1.0, 1.0), (5.0, 0.3), (0.01, 60.0)])
def test_ttl_single_key_is_renewal_formula(read_rate, ttl_s):
    """With one key the hit ratio is lambda T / (1 + lambda T)."""
    x = read_rate * ttl_s
    assert ttl_hit_ratio(np.array([1.0]), read_rate, ttl_s) == pytest.approx(x / (1 + x))


def test_ttl_hit_ratio_grows_with_ttl():
    """A longer TTL never lowers the hit ratio; no TTL at all gives 1."""
    p = zipf_popularity(1000, 0.8)
    ratios = [ttl_hit_ratio(p, 100.0, t) for t in (0.0, 0.1, 1.0, 10.0, 100.0)]
    assert ratios[0] == 0.0
    assert ratios == sorted(ratios) and ratios[-1] < 1.0
    assert ttl_hit_ratio(p, 100.0, None) == 1.0


def test_ttl_matches_a_brute_force_cache():
    """The renewal model is within 0.01 of simulated Poisson reads (50 keys, alpha 0.8)."""
    p = zipf_popularity(50, 0.8)
    simulated = simulate_ttl(p, read_rate=10.0, ttl_s=2.0, requests=200_000, seed=2)
    assert ttl_hit_ratio(p, 10.0, 2.0) == pytest.approx(simulated, abs=0.01)


@pytest.mark.parametrize(("read_rate", "ttl_s", "field"), [(-1.0, 1.0, "read_rate"), (1.0, -1.0, "ttl_s")])
def test_ttl_rejects_bad_parameters(read_rate, ttl_s, field):
    """Negative rates and TTLs raise ValueError naming the parameter."""
    with pytest.raises(ValueError, match=field):
        ttl_hit_ratio(zipf_popularity(10, 1.0), read_rate, ttl_s)


# --- Erlang C -------------------------------------------------------------------------------


@pytest.mark.parametrize(("arrival_rate", "mean_service_s"), [(0.5, 1.0), (90.0, 0.01), (3.0, 0.1)])
def test_erlang_c_with_one_server_is_mm1(arrival_rate, mean_service_s):
    """With one server P(wait) = rho and the mean wait is rho / (mu - lambda)."""
    rho = arrival_rate * mean_service_s
    mu = 1 / mean_service_s
    assert erlang_c(1, arrival_rate, mean_service_s) == pytest.approx(rho)
    assert erlang_c_mean_wait(1, arrival_rate, mean_service_s) == pytest.approx(rho / (mu - arrival_rate))


def test_erlang_c_textbook_two_servers():
    """Two servers, lambda = 1, s = 1: P(wait) = 1/3 and Wq = 1/3."""
    assert erlang_c(2, 1.0, 1.0) == pytest.approx(1 / 3)
    assert erlang_c_mean_wait(2, 1.0, 1.0) == pytest.approx(1 / 3)


def exact_erlang_c(servers: int, load: Fraction) -> Fraction:
    """Erlang C from its textbook formula, in exact rational arithmetic."""
    top = load**servers / math.factorial(servers) * servers / (servers - load)
    return top / (sum(load**k / math.factorial(k) for k in range(servers)) + top)


@pytest.mark.parametrize(("servers", "load"), [(5, Fraction(3)), (10, Fraction(19, 2)), (40, Fraction(30))])
def test_erlang_c_matches_the_exact_formula(servers, load):
    """The Erlang B recursion agrees with the factorial formula computed exactly."""
    assert erlang_c(servers, float(load), 1.0) == pytest.approx(float(exact_erlang_c(servers, load)), rel=1e-12)


def test_erlang_c_stays_finite_for_hundreds_of_servers():
    """500 servers at 90% utilisation give a probability, where a**c / c! would overflow."""
    assert erlang_c(500, 450.0, 1.0) == pytest.approx(float(exact_erlang_c(500, Fraction(450))), rel=1e-9)


def test_erlang_c_without_arrivals_never_waits():
    """No arrivals means no waiting."""
    assert erlang_c(4, 0.0, 1.0) == 0.0
    assert erlang_c_mean_wait(4, 0.0, 1.0) == 0.0


@pytest.mark.parametrize("arrival_rate", [2.0, 3.0])
def test_erlang_c_unstable_queue_raises(arrival_rate):
    """A utilisation of 1 or more raises ValueError naming the utilisation."""
    for func in (erlang_c, erlang_c_mean_wait):
        with pytest.raises(ValueError, match="utilisation"):
            func(2, arrival_rate, 1.0)


def test_utilisation_is_load_per_server():
    """rho = lambda s / c, reported even when it is 1 or more."""
    assert mm_c_utilisation(4, 30.0, 0.1) == pytest.approx(0.75)
    assert mm_c_utilisation(1, 20.0, 0.1) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("args", "field"),
    [((0, 1.0, 1.0), "servers"), ((2.0, 1.0, 1.0), "servers"), ((2, -1.0, 1.0), "arrival_rate"),
     ((2, 1.0, 0.0), "mean_service_s"), ((2, 1.0, -1.0), "mean_service_s")],
)
def test_queue_functions_reject_bad_parameters(args, field):
    """Bad servers, rates or service times raise ValueError naming the parameter."""
    for func in (erlang_c, erlang_c_mean_wait, mm_c_utilisation):
        with pytest.raises(ValueError, match=field):
            func(*args)
