"""The simulator agrees with the closed forms where both make the same assumptions.

Each comparison uses seeded replications and measures only after the warm-up.
To match a model's assumptions the runs make cache and database nearly
instant where the model has no time (Che, TTL), or use no cache at all where
the model is only the connection pool (Erlang C).
"""

from __future__ import annotations

import numpy as np
import pytest

from wtsim.analytic import article_db_load, che_hit_ratio, erlang_c_mean_wait, ttl_hit_ratio, zipf_popularity
from wtsim.sim import Scenario, load_scenario, run

# Requests take a microsecond, so a key is cached the moment it is missed (the models' assumption).
INSTANT = Scenario(
    duration_s=12.0, warmup_s=2.0, write_rate=0.0, prefill=False, service="deterministic",
    cache_rtt_s=1e-6, db_read_s=1e-6, db_write_s=1e-6,
)
SEEDS = (0, 1, 2)


def mean_of(scenario: Scenario, figure: str, seeds=SEEDS) -> float:
    return float(np.mean([getattr(run(scenario.replace(seed=seed)), figure) for seed in seeds]))


def test_lru_hit_ratio_matches_che():
    """An LRU cache of 100 keys under Zipf(0.8) reads of 1,000 keys hits as Che predicts, within 0.01."""
    scenario = INSTANT.replace(read_rate=5000, n_keys=1000, zipf_alpha=0.8, cache_capacity=100)
    expected = che_hit_ratio(zipf_popularity(1000, 0.8), 100)
    assert mean_of(scenario, "hit_ratio") == pytest.approx(expected, abs=0.01)


def test_ttl_hit_ratio_matches_the_renewal_formula():
    """Entries living 1 s from their miss hit with lambda*T / (1 + lambda*T) per key, within 0.01."""
    scenario = INSTANT.replace(read_rate=5000, n_keys=1000, zipf_alpha=0.8, ttl_s=1.0)
    expected = ttl_hit_ratio(zipf_popularity(1000, 0.8), 5000, 1.0)
    assert mean_of(scenario, "hit_ratio") == pytest.approx(expected, abs=0.01)


def test_db_connection_wait_matches_erlang_c():
    """Without a cache the pool is an M/M/c queue: the mean wait is Erlang C's, within 6%."""
    scenario = Scenario(
        policy="none", duration_s=30.0, warmup_s=1.0, read_rate=1200, write_rate=0, n_keys=10,
        db_connections=4, db_read_s=0.002,  # utilisation 0.6
    )
    expected = erlang_c_mean_wait(4, 1200, 0.002)
    assert mean_of(scenario, "db_wait_mean_s", seeds=(0, 1, 2, 3)) == pytest.approx(expected, rel=0.06)


def test_the_articles_example_gives_99_percent_less_db_load():
    """10,000 reads/s and 100 writes/s on a warm cache: the database sees about 99% fewer queries."""
    article = load_scenario("article").replace(duration_s=4.0)
    with_cache = run(article)
    without = run(article.replace(policy="none"))
    reduction = 1 - with_cache.db_queries_per_s / without.db_queries_per_s
    assert with_cache.hit_ratio == 1.0
    assert reduction == pytest.approx(article_db_load(10_000, 100)["reduction"], abs=0.002)  # 0.990


def test_a_small_cold_cache_is_far_from_99_percent_as_che_predicts():
    """With room for a tenth of the keys and a cold start, the reduction is what Che's hit ratio gives."""
    article = load_scenario("article")
    small = article.replace(prefill=False, cache_capacity=1000, duration_s=6.0, warmup_s=2.0)
    with_cache = run(small)
    without = run(small.replace(policy="none", duration_s=4.0))
    hit_ratio = che_hit_ratio(zipf_popularity(10_000, 1.0), 1000)
    assert with_cache.hit_ratio == pytest.approx(hit_ratio, abs=0.01)
    reduction = 1 - with_cache.db_queries_per_s / without.db_queries_per_s
    assert reduction == pytest.approx(article_db_load(10_000, 100, hit_ratio)["reduction"], abs=0.01)
    assert reduction < 0.75
