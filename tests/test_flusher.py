"""The write-behind flusher (wtsim.WriteBehindFlusher), on fakeredis and a real Redis, SQLite and PostgreSQL.

fakeredis (2.41) implements XREADGROUP, XAUTOCLAIM, XACK, XDEL and XADD inside
Lua, so every test runs on both Redis backends.
"""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy.exc
from sqlalchemy.orm import Session

from wtsim import Stepper, WriteBehindCache, WriteBehindFlusher, codec, upsert_newer
from wtsim.models import Product
from wtsim.ops import CacheUnpin, StreamAck
from wtsim.policies.flush import flush_once

NS = "products"
PID = "p-1"  # the catalog row: stock 333, version 1
NEW = "p-new"  # not in the catalog
ROW = {"name": "Widget", "price_cents": 100, "stock": 5}


def version_reader(entity_id):
    def read(session: Session) -> int | None:
        row = session.get(Product, entity_id)
        return None if row is None else row.version

    return read


class Counting:
    """An applier that counts its calls, and first raises ``fail`` ``times`` times."""

    def __init__(self, fail: BaseException | None = None, times: int = 0) -> None:
        self.inner, self.calls, self.fail, self.times = upsert_newer(Product), [], fail, times

    def __call__(self, session, entity_id, data, version) -> None:
        self.calls.append((entity_id, version))
        if self.fail is not None and len(self.calls) <= self.times:
            raise self.fail
        self.inner(session, entity_id, data, version)


@pytest.fixture
def cache(redis_conn, key_prefix) -> WriteBehindCache:
    return WriteBehindCache(redis_conn, prefix=key_prefix)


@pytest.fixture
def make_flusher(redis_conn, key_prefix, engine):
    def make(applier=None, **options) -> WriteBehindFlusher:
        options.setdefault("backoff_s", 0.001)
        options.setdefault("max_delay_s", 0.01)
        options.setdefault("default_ttl", 60)
        return WriteBehindFlusher(redis_conn, engine, {NS: applier or upsert_newer(Product)},
                                  prefix=key_prefix, **options)

    return make


def row(engine, entity_id=PID) -> Product | None:
    with Session(engine) as session:
        return session.get(Product, entity_id)


def write(cache, engine, entity_id, data) -> int:
    with Session(engine) as session:
        return cache.write(NS, entity_id, data, db=session, version_reader=version_reader(entity_id))


def test_five_writes_of_one_key_are_one_upsert_of_version_five(cache, make_flusher, engine, redis_conn):
    applier = Counting()
    for stock in range(5):
        write(cache, engine, NEW, {**ROW, "stock": stock})
    flusher = make_flusher(applier)
    result = flusher.flush_once()
    assert applier.calls == [(NEW, 5)]
    assert (result.read, result.applied, result.coalesced, result.unpinned) == (5, 1, 4, 1)
    assert (row(engine, NEW).version, row(engine, NEW).stock) == (5, 4)
    assert redis_conn.xlen(cache.stream) == 0  # acked and deleted
    assert redis_conn.xpending(cache.stream, flusher.config.group)["pending"] == 0
    entry = codec.decode(redis_conn.get(cache.key(NS, NEW)))
    assert not entry.dirty and entry.version == 5 and 0 < redis_conn.ttl(cache.key(NS, NEW)) <= 60
    assert flusher.flush_once().read == 0


def test_a_newer_write_during_the_flush_stays_pinned(cache, make_flusher, engine, redis_conn):
    """Flushed v2 un-pins only if the entry is still v2: a write of v3 meanwhile keeps it dirty, without TTL."""
    write(cache, engine, PID, ROW)
    flusher = make_flusher()
    stepper = Stepper(flush_once(flusher.state, flusher.appliers), flusher.perform)
    while not isinstance(stepper.pending, CacheUnpin):
        stepper.step()
    assert cache.write(NS, PID, {**ROW, "stock": 7}) == 3
    assert stepper.run().unpinned == 0
    entry = codec.decode(redis_conn.get(cache.key(NS, PID)))
    assert entry.dirty and entry.version == 3 and redis_conn.ttl(cache.key(NS, PID)) == -1
    assert row(engine).version == 2
    flusher.flush_once()
    assert row(engine).stock == 7 and redis_conn.ttl(cache.key(NS, PID)) > 0


def test_an_older_version_never_overwrites_a_newer_row(engine):
    apply = upsert_newer(Product)
    with Session(engine) as session:
        apply(session, PID, {**ROW, "stock": 50}, 5)
        apply(session, PID, {**ROW, "stock": 30}, 3)
        apply(session, NEW, ROW, 1)
        session.commit()
    assert (row(engine).version, row(engine).stock) == (5, 50)
    assert row(engine, NEW).version == 1


def test_upsert_newer_refuses_unknown_fields(engine):
    with Session(engine) as session, pytest.raises(ValueError, match=r"fields \['colour'\] are not columns"):
        upsert_newer(Product)(session, PID, {"colour": "red"}, 2)


def test_a_redelivered_batch_is_idempotent(cache, make_flusher, engine, redis_conn):
    """A flusher commits v2 and dies before its ack; v3 is flushed by another; the redelivery of v2 changes nothing."""
    write(cache, engine, PID, {**ROW, "stock": 2})
    dying = make_flusher(consumer="a")
    stepper = Stepper(flush_once(dying.state, dying.appliers), dying.perform)
    while not isinstance(stepper.pending, StreamAck):
        stepper.step()
    assert row(engine).version == 2  # committed, never acknowledged
    cache.write(NS, PID, {**ROW, "stock": 3})
    assert make_flusher(consumer="b").flush_once().applied == 1
    assert (row(engine).version, row(engine).stock) == (3, 3)
    restarted = make_flusher(consumer="a")  # same name: it re-reads what it was given
    assert restarted.flush_once().read == 1
    assert (row(engine).version, row(engine).stock) == (3, 3)
    assert redis_conn.xlen(cache.stream) == 0


def test_a_database_error_is_retried_with_backoff_and_nothing_is_lost(cache, make_flusher, engine):
    outage = sqlalchemy.exc.OperationalError("INSERT", {}, Exception("connection refused"))
    applier = Counting(fail=outage, times=2)
    write(cache, engine, PID, ROW)
    flusher = make_flusher(applier, max_attempts=5)
    result = flusher.flush_once()
    assert (result.applied, result.retries, result.dead) == (1, 2, 0)
    assert row(engine).version == 2 and flusher.stats.db_errors == 2


def test_a_database_down_longer_than_the_retries_leaves_the_entries_pending(cache, make_flusher, engine, redis_conn):
    outage = sqlalchemy.exc.OperationalError("INSERT", {}, Exception("connection refused"))
    applier = Counting(fail=outage, times=3)
    write(cache, engine, PID, ROW)
    flusher = make_flusher(applier, max_attempts=3)
    with pytest.raises(sqlalchemy.exc.OperationalError):
        flusher.flush_once()
    assert redis_conn.xlen(cache.stream) == 1 and redis_conn.xlen(flusher.config.dead_stream) == 0
    assert flusher.flush_once().applied == 1  # the database is back: the same entry, re-read
    assert row(engine).version == 2 and redis_conn.xlen(cache.stream) == 0


def test_an_entry_whose_applier_always_raises_goes_to_the_dead_letter_stream(cache, make_flusher, engine, redis_conn):
    """The bad entry is dead-lettered with its error; a good one in the same batch is applied."""
    def applier(session, entity_id, data, version):
        if entity_id == NEW:
            raise ValueError("price_cents must be >= 0")
        upsert_newer(Product)(session, entity_id, data, version)

    write(cache, engine, PID, ROW)
    write(cache, engine, NEW, ROW)
    flusher = make_flusher(applier, max_attempts=2)
    result = flusher.flush_once()
    assert (result.applied, result.dead) == (1, 1)
    assert row(engine).version == 2 and row(engine, NEW) is None
    [(_, fields)] = redis_conn.xrange(flusher.config.dead_stream)
    assert fields[b"id"] == b'"p-new"' and b"price_cents must be >= 0" in fields[b"error"]
    assert redis_conn.xlen(cache.stream) == 0 and flusher.stats.dead == 1
    redis_conn.delete(flusher.config.dead_stream)


def test_an_entry_of_an_unknown_namespace_is_dead_lettered(cache, make_flusher, engine, redis_conn):
    cache.write("orders", 7, {"total": 1}, db=None, version_reader=lambda db: None)
    flusher = make_flusher()
    assert flusher.flush_once().dead == 1
    assert b"no applier" in redis_conn.xrange(flusher.config.dead_stream)[0][1][b"error"]
    redis_conn.delete(flusher.config.dead_stream)


def test_xautoclaim_takes_over_what_a_dead_consumer_read(cache, make_flusher, engine, redis_conn):
    flusher = make_flusher(consumer="alive", claim_idle_s=0.05)
    flusher.flush_once()  # creates the group; nothing to flush yet
    write(cache, engine, PID, ROW)
    write(cache, engine, NEW, ROW)
    taken = redis_conn.xreadgroup(flusher.config.group, "dead", {cache.stream: ">"}, count=10)
    assert len(taken[0][1]) == 2  # read, never acknowledged
    time.sleep(0.1)
    result = flusher.flush_once()
    assert (result.claimed, result.applied) == (2, 2)
    assert row(engine).version == 2 and row(engine, NEW).version == 1
    assert redis_conn.xpending(cache.stream, flusher.config.group)["pending"] == 0


def test_run_flushes_until_stopped(cache, make_flusher, engine):
    flusher = make_flusher()
    stop = threading.Event()
    thread = threading.Thread(target=flusher.run, args=(stop,))
    thread.start()
    try:
        write(cache, engine, PID, ROW)
        deadline = time.monotonic() + 5
        while cache.pending() and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive() and row(engine).version == 2


@pytest.mark.parametrize("field,bad", [("batch", 0), ("max_attempts", 0), ("max_delay_s", 0), ("claim_idle_s", -1)])
def test_settings_are_checked(redis_conn, engine, field, bad):
    with pytest.raises(ValueError, match=field):
        WriteBehindFlusher(redis_conn, engine, {NS: upsert_newer(Product)}, **{field: bad})


def test_a_stop_during_a_retry_wait_abandons_the_batch_and_keeps_its_entries(cache, make_flusher, engine, redis_conn):
    """The database is down and the flusher waits 30 s to retry: a stop ends it at once, nothing dead-lettered."""
    outage = sqlalchemy.exc.OperationalError("INSERT", {}, Exception("connection refused"))
    applier = Counting(fail=outage, times=10**6)
    write(cache, engine, PID, ROW)
    flusher = make_flusher(applier, backoff_s=30, backoff_max_s=30)
    stop = threading.Event()
    thread = threading.Thread(target=flusher.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not applier.calls and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(applier.calls) == 1  # the first attempt failed; now in the backoff wait
        stopped = time.monotonic()
        stop.set()
        thread.join(5)
        assert not thread.is_alive() and time.monotonic() - stopped < 2
    finally:
        stop.set()
        thread.join(5)
    assert len(applier.calls) == 1 and row(engine).version == 1
    assert redis_conn.xlen(cache.stream) == 1 and redis_conn.xlen(flusher.config.dead_stream) == 0
    assert redis_conn.xpending(cache.stream, flusher.config.group)["pending"] == 1  # still ours, unacknowledged
    applier.fail = None  # the database is back: the same flusher re-reads its entry and applies it
    assert flusher.flush_once().applied == 1 and row(engine).version == 2


def test_run_logs_each_batch_and_a_summary(cache, make_flusher, engine, caplog):
    flusher = make_flusher()
    write(cache, engine, PID, ROW)
    write(cache, engine, NEW, ROW)
    stop = threading.Event()
    caplog.set_level("INFO", logger="wtsim.flusher")
    thread = threading.Thread(target=flusher.run, args=(stop,), kwargs={"summary_every_s": 0.05})
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not any("summary:" in r.message for r in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join(5)
    messages = [r.message for r in caplog.records]
    batches = [m for m in messages if m.startswith("batch:")]
    assert len(batches) == 1 and batches[0].startswith("batch: read 2 (claimed 0), applied 2, coalesced 0, dead 0")
    summary = next(m for m in messages if m.startswith("summary:"))
    assert "queue length 0" in summary and "applied=2" in summary


def test_an_evicted_dirty_entry_is_still_flushed_but_the_old_row_comes_back_and_a_version_repeats(
        cache, make_flusher, engine, redis_conn, db):
    """What allkeys-* eviction of a dirty entry does (the stream kept): see the README's "What a crash can lose"."""
    from wtsim.models import product_dict

    assert write(cache, engine, PID, {**ROW, "stock": 7}) == 2
    redis_conn.delete(cache.key(NS, PID))  # evicted
    assert cache.read(db, NS, PID, lambda s: s.get(Product, PID), product_dict)["stock"] == 333  # the old row...
    populated = codec.decode(redis_conn.get(cache.key(NS, PID)))
    assert (populated.version, populated.dirty, populated.data["stock"]) == (1, False, 333)
    flusher = make_flusher()
    assert flusher.flush_once().unpinned == 0  # ...populated, and not replaced by the flush
    assert (row(engine).version, row(engine).stock) == (2, 7)  # the stream still held the write
    assert codec.decode(redis_conn.get(cache.key(NS, PID))).data["stock"] == 333  # stale until its TTL
    assert cache.write(NS, PID, {**ROW, "stock": 8}) == 2  # the cached v1 gives version 2 again...
    flusher.flush_once()
    assert (row(engine).version, row(engine).stock) == (2, 7)  # ...which the database refuses: stock 8 is lost
    assert codec.decode(redis_conn.get(cache.key(NS, PID))).data["stock"] == 8  # while the cache says it is there
