"""The article's usage example, verbatim, run against wtsim's cache.

``update_product_stock`` below is copied unchanged from the article the
project grew from (only this docstring and the imports are ours). It runs
against :class:`wtsim.WriteThroughCache` with the mapped
:class:`wtsim.models.Product`, because wtsim keeps the article's signatures.

Two things it shows that wtsim's own code avoids:

* ``session.query(Product).get(product_id)`` is legacy in SQLAlchemy 2.0 (it
  warns); write ``session.get(Product, product_id)``.
* its ``serialize`` leaves out ``version``, so it cannot be used with
  ``versioned=True``, which needs the row's version to order cache updates.
"""

from sqlalchemy.orm import Session

from .cache import WriteThroughCache
from .models import Product


def update_product_stock(cache: WriteThroughCache, db: Session,
                         product_id: str, new_stock: int) -> dict:
    """Update stock with write-through guarantee."""

    def db_writer(session: Session) -> Product:
        product = session.query(Product).get(product_id)
        product.stock = new_stock
        return product

    def serialize(p: Product) -> dict:
        return {"id": p.id, "name": p.name,
                "price_cents": p.price_cents, "stock": p.stock}

    result = cache.write(
        db=db,
        namespace="products",
        entity_id=product_id,
        db_writer=db_writer,
        serialize=serialize,
        ttl=1800,
    )
    return serialize(result)
