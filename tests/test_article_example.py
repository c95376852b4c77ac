"""The article's own code runs against wtsim, on every backend pair.

``update_product_stock`` is the article's usage example, kept verbatim in :mod:`wtsim.article`
(where the notebooks show it), with the mapped :class:`wtsim.models.Product` in place of its
plain dataclass. The article's test
``test_write_populates_cache`` follows, corrected where it could not run.
"""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from wtsim import WriteThroughCache
from wtsim.article import update_product_stock
from wtsim.models import Product




def must_not_read(session: Session) -> None:
    pytest.fail("the database reader was called although the entry was cached")


# The article calls session.query(Product).get(), legacy in SQLAlchemy 2.x (it emits
# LegacyAPIWarning). The call is kept verbatim on purpose; the warning is silenced for this test only.
@pytest.mark.filterwarnings("ignore::sqlalchemy.exc.LegacyAPIWarning")
def test_update_product_stock_runs_unchanged(db, engine, redis_conn, make_cache):
    """The article's example updates the row, returns its dict, and leaves the new stock cached for 1800 s."""
    cache = make_cache()
    with Session(engine) as other:
        before = other.get(Product, "p-1")
        name, price = before.name, before.price_cents
    assert update_product_stock(cache, db, "p-1", 7) == {
        "id": "p-1", "name": name, "price_cents": price, "stock": 7,
    }
    with Session(engine) as other:
        assert other.get(Product, "p-1").stock == 7

    cached = cache.read(db, "products", "p-1", must_not_read, lambda p: pytest.fail("serialize called"))
    assert cached["stock"] == 7
    assert 1_798_000 < redis_conn.pttl(cache.key("products", "p-1")) <= 1_800_000

    update_product_stock(cache, db, "p-1", 8)  # and again, on the same session
    assert cache.read(db, "products", "p-1", must_not_read, dict)["stock"] == 8
    assert cache.stats.db_writes == 2 and cache.stats.db_reads == 0


# ---- the article's test, corrected ----------------------------------------------------------
@pytest.fixture
def cache(redis_conn, key_prefix):
    # The article's fixture, on each Redis backend; a private prefix keeps a shared real Redis clean.
    return WriteThroughCache(redis_client=redis_conn, default_ttl=60, prefix=key_prefix)


def test_write_populates_cache(cache, db, engine):
    """After a write, the cache should hold the new data."""
    # Corrected: the article passes an undefined `mock_session` and builds its dataclass Product
    # positionally; here the session is real and the writer really writes the mapped Product.
    result = cache.write(
        db=db,
        namespace="products",
        entity_id="p-1",
        db_writer=lambda s: s.merge(Product(id="p-1", name="Widget", price_cents=999, stock=50)),
        serialize=lambda p: {"id": p.id, "name": p.name,
                             "price_cents": p.price_cents, "stock": p.stock},
    )
    assert result.stock == 50

    # Subsequent read should come from cache, not DB
    cached = cache.read(
        db=db,
        namespace="products",
        entity_id="p-1",
        db_reader=lambda s: None,  # DB should not be called
        serialize=lambda p: {},
    )
    assert cached["stock"] == 50
    assert cache.stats.hits == 1 and cache.stats.db_reads == 0
    with Session(engine) as other:
        assert other.get(Product, "p-1").name == "Widget"
