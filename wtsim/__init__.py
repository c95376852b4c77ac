"""wtsim: learn the write-through caching pattern, and the patterns it is weighed against.

One policy, two worlds: each pattern's decisions live in :mod:`wtsim.policies`
as generators that yield operations; the real :class:`WriteThroughCache` and
:class:`CacheAside` (and :class:`WriteBehindCache` with its
:class:`WriteBehindFlusher`) perform them on Redis and SQLAlchemy, :mod:`wtsim.aio`
(:class:`AsyncWriteThroughCache` and its siblings) on ``redis.asyncio`` and SQLAlchemy's
``AsyncSession``, and :mod:`wtsim.sim` performs them in SimPy's simulated time.
"""

import logging

from .breaker import CircuitBreaker
from .appliers import upsert_newer
from .cache import CacheAside, PolicyCache, WriteBehindCache, WriteThroughCache
from .flusher import WriteBehindFlusher
from .connections import make_engine, redis_client
from .keys import entry_key
from .ops import CacheError, CacheRejected, CacheUnavailable
from .policies import POLICIES, Stepper, drive
from .policies.flush import FlushResult
from .policies.state import CacheStats, PolicyConfig
from .policies.write_behind import WriteQueueFull

__version__ = "0.1.0"

__all__ = [
    "POLICIES",
    "AsyncCacheAside",
    "AsyncPolicyCache",
    "AsyncWriteBehindCache",
    "AsyncWriteThroughCache",
    "CacheAside",
    "CacheError",
    "CacheRejected",
    "CacheStats",
    "CacheUnavailable",
    "CircuitBreaker",
    "PolicyCache",
    "PolicyConfig",
    "FlushResult",
    "Stepper",
    "WriteBehindCache",
    "WriteBehindFlusher",
    "WriteQueueFull",
    "WriteThroughCache",
    "drive",
    "entry_key",
    "make_engine",
    "redis_client",
    "upsert_newer",
]

_AIO_NAMES = ("AsyncCacheAside", "AsyncPolicyCache", "AsyncWriteBehindCache", "AsyncWriteThroughCache")


def __getattr__(name: str):
    """The asyncio caches, imported on first use: :mod:`wtsim.aio` loads SQLAlchemy's asyncio (greenlet)."""
    if name in _AIO_NAMES:
        from . import aio

        return getattr(aio, name)
    raise AttributeError(f"module 'wtsim' has no attribute {name!r}")


# A library never prints: log records go nowhere unless the application configures logging.
logging.getLogger("wtsim").addHandler(logging.NullHandler())
