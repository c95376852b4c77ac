"""wtsim: learn the write-through caching pattern, and the patterns it is weighed against.

One policy, two worlds: each pattern's decisions live in :mod:`wtsim.policies`
as generators that yield operations; the real :class:`WriteThroughCache` and
:class:`CacheAside` perform them on Redis and SQLAlchemy, and :mod:`wtsim.sim`
performs them in SimPy's simulated time.
"""

import logging

from .breaker import CircuitBreaker
from .cache import CacheAside, PolicyCache, WriteThroughCache
from .connections import make_engine, redis_client
from .keys import entry_key
from .ops import CacheError, CacheRejected, CacheUnavailable
from .policies import POLICIES, Stepper, drive
from .policies.state import CacheStats, PolicyConfig

__version__ = "0.1.0"

__all__ = [
    "POLICIES",
    "CacheAside",
    "CacheError",
    "CacheRejected",
    "CacheStats",
    "CacheUnavailable",
    "CircuitBreaker",
    "PolicyCache",
    "PolicyConfig",
    "Stepper",
    "WriteThroughCache",
    "drive",
    "entry_key",
    "make_engine",
    "redis_client",
]

# A library never prints: log records go nowhere unless the application configures logging.
logging.getLogger("wtsim").addHandler(logging.NullHandler())
