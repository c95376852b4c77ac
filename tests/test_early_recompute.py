"""Early recompute (XFetch, VLDB 2015): a hit recomputes when now - delta * beta * ln(U) >= expiry.

The clock and the random source are injected, so each case is exact: the
populate stores ``delta`` (how long the database read took on the clock) and
the expiry; a later hit draws U and either answers from the cache or reads the
database and refreshes the entry, as a miss would.
"""

from __future__ import annotations

import math

import pytest
from sqlalchemy.orm import Session

from wtsim import CacheAside, WriteThroughCache, codec
from wtsim.models import Product, product_dict

NS = "products"
PID = "p-1"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


def slow_reader(clock: Clock, seconds: float):
    """A db_reader that takes ``seconds`` on the clock."""

    def reader(session: Session) -> Product:
        clock.now += seconds
        return session.get(Product, PID)

    return reader


@pytest.fixture
def make(redis_conn, key_prefix, clock):
    def build(cls=WriteThroughCache):
        # random() = 0.5 gives U = 1 - random() = 0.5: the horizon is delta * ln 2
        return cls(redis_conn, prefix=key_prefix, default_ttl=60, clock=clock, random=lambda: 0.5,
                   early_recompute_beta=1.0)

    return build


@pytest.mark.parametrize("cls", [WriteThroughCache, CacheAside])
def test_the_populate_stores_the_recompute_time_and_the_expiry(make, db, redis_conn, clock, cls):
    """The entry carries delta (the DB read's duration) and its expiry on the cache's clock."""
    cache = make(cls)
    cache.read(db, NS, PID, slow_reader(clock, 2.0), product_dict)
    entry = codec.decode(redis_conn.get(cache.key(NS, PID)))
    assert entry.delta == pytest.approx(2.0)
    assert entry.expires_at == pytest.approx(102.0 + 60)


def test_far_from_expiry_a_hit_stays_a_hit(make, db, clock):
    """With U = 0.5 the horizon is delta * ln 2 = 1.39 s: ten seconds before expiry, no recompute."""
    cache = make()
    cache.read(db, NS, PID, slow_reader(clock, 2.0), product_dict)
    clock.now = 162.0 - 10.0
    cache.read(db, NS, PID, slow_reader(clock, 2.0), product_dict)
    assert cache.stats.hits == 1 and cache.stats.early_recomputes == 0 and cache.stats.db_reads == 1


def test_near_expiry_one_reader_recomputes_and_refreshes(make, db, redis_conn, clock):
    """Within delta * beta * -ln(U) of the expiry, a hit reads the database and stores a fresh entry."""
    cache = make()
    cache.read(db, NS, PID, slow_reader(clock, 2.0), product_dict)
    clock.now = 162.0 - 2.0 * math.log(2) + 0.01  # just inside the horizon
    data = cache.read(db, NS, PID, slow_reader(clock, 2.0), product_dict)
    assert data["stock"] == 333
    assert cache.stats.early_recomputes == 1 and cache.stats.db_reads == 2
    entry = codec.decode(redis_conn.get(cache.key(NS, PID)))
    assert entry.expires_at == pytest.approx(clock.now + 60)  # refreshed before it expired


def test_a_larger_beta_recomputes_earlier(redis_conn, key_prefix, db, clock):
    """beta scales the horizon: at beta = 4 the same moment recomputes, at beta = 1 it does not."""
    for beta, expected in ((1.0, 0), (4.0, 1)):
        cache = WriteThroughCache(redis_conn, prefix=key_prefix, default_ttl=60, clock=clock,
                                  random=lambda: 0.5, early_recompute_beta=beta)
        cache.invalidate(NS, PID)
        clock.now = 100.0
        cache.read(db, NS, PID, slow_reader(clock, 2.0), product_dict)
        clock.now = 162.0 - 4.0  # 2 * ln 2 = 1.39 s < 4 s < 4 * 2 * ln 2 = 5.5 s
        cache.read(db, NS, PID, slow_reader(clock, 0.0), product_dict)
        assert cache.stats.early_recomputes == expected, beta


def test_without_beta_the_envelope_is_the_plain_one(redis_conn, key_prefix, db):
    """Off by default: no delta, no expiry in the payload, the article's envelope."""
    cache = WriteThroughCache(redis_conn, prefix=key_prefix)
    cache.read(db, NS, PID, lambda s: s.get(Product, PID), product_dict)
    raw = redis_conn.get(cache.key(NS, PID)).decode()
    assert '"x"' not in raw and '"e"' not in raw


@pytest.mark.parametrize("leases", [False, True], ids=["plain", "leases"])
def test_an_early_refresh_never_replaces_what_came_after_its_read(key_prefix, db, engine, redis_conn, clock, leases):
    """A write lands while an early reader recomputes: its refresh is refused, the written value stays."""
    cache = WriteThroughCache(redis_conn, prefix=key_prefix, default_ttl=60, clock=clock,
                              random=lambda: 0.5, early_recompute_beta=1.0, leases=leases)
    cache.read(db, NS, PID, slow_reader(clock, 2.0), product_dict)
    clock.now = 162.0 - 1.0  # inside the horizon: the next hit recomputes
    reader = cache.step_read(db, NS, PID, slow_reader(clock, 0.5), product_dict)
    reader.step()  # the hit it will refresh
    reader.step()  # the database read of the old row
    with Session(engine) as other:
        def writer(session):
            product = session.get(Product, PID)
            product.stock = 7
            return product

        cache.write(other, NS, PID, writer, product_dict)
    reader.run()
    assert cache.stats.early_recomputes == 1 and cache.stats.refused_older == 1
    assert codec.decode(redis_conn.get(cache.key(NS, PID))).data["stock"] == 7
