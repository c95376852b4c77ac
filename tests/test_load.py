"""``wtsim load``: a scenario in real time on real Redis and SQL, judged by the simulator's oracle.

The history, the oracle's judgement and the refusals are tested without
servers. The short real runs (a few seconds each) use a private
``redis-server`` that the runner starts (every fault kind can be injected
there, CONFIG SET included) or the shared Redis for fault-free runs, on
SQLite and PostgreSQL; they skip without the servers, and fail in CI.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
import redis

from conftest import DATABASE_URL, REDIS_URL, unavailable
from servers import redis_server_binary
from wtsim import oracle
from wtsim.cli import main
from wtsim.load import Calibration, LoadTooHigh, Record, read_history, run_load, write_history
from wtsim.load.history import judge, measured_result
from wtsim.load.run import check_rate, check_scenario
from wtsim.sim import Fault, Scenario
from wtsim.sim.run import run as simulate

# A small scenario one client drives easily: 600 requests/s on 300 keys, every key
# cached at the start and expiring (ttl 2 s), so both hits and misses happen.
BASE = dict(name="load-test", duration_s=3.0, warmup_s=0.5, seed=7, read_rate=500.0, write_rate=20.0,
            n_keys=300, zipf_alpha=0.8, prefill=True, ttl_s=2.0, cache_timeout_s=0.1, breaker_cooldown_s=0.5)


def scenario(**changes) -> Scenario:
    return Scenario(**{**BASE, **changes})


def private_redis_or_skip() -> None:
    redis_server_binary()  # skips, or fails when servers are required


def shared_redis_or_skip() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable(f"Redis at {REDIS_URL}", exc)
    finally:
        client.close()
    return REDIS_URL


# -- the history and its judgement (no servers) ------------------------------------------------

def test_the_oracle_judges_a_recorded_history_as_the_simulator_defines_it():
    records = [
        Record(server=0, kind="write", key=1, start=1.0, end=1.2, version=2, committed_version=2, committed_at=1.1),
        Record(server=0, kind="read", key=1, start=1.05, end=1.06, version=1),  # began before the commit: fresh
        Record(server=0, kind="read", key=1, start=1.5, end=1.51, version=1),  # 0.4 s after it: stale
        Record(server=0, kind="read", key=1, start=1.6, end=1.61, version=2),
        Record(server=0, kind="read", key=2, start=1.6, end=1.7, failed=True, error="CacheUnavailable"),
    ]
    assert judge(records) == [None, None, pytest.approx(0.4), None, None]


def test_a_write_that_failed_after_its_commit_still_counts_for_the_oracle():
    records = [
        Record(server=0, kind="write", key=1, start=1.0, end=1.3, failed=True, error="TimeoutError",
               committed_version=2, committed_at=1.1),
        Record(server=0, kind="read", key=1, start=2.0, end=2.01, version=1),
    ]
    assert judge(records)[1] == pytest.approx(0.9)


def test_the_measured_result_is_folded_by_the_simulators_recorder():
    s = scenario(duration_s=2.0, warmup_s=0.0)
    records = [
        Record(server=0, kind="read", key=1, start=0.1, end=0.1002, version=1),  # a hit
        Record(server=0, kind="read", key=2, start=0.2, end=0.203, version=1, db_reads=1),  # a miss
        Record(server=0, kind="write", key=1, start=0.5, end=0.51, version=2, db_writes=1,
               committed_version=2, committed_at=0.505),
        Record(server=0, kind="read", key=1, start=1.0, end=1.0002, version=1),  # stale by 0.495 s
        Record(server=0, kind="read", key=3, start=1.5, end=1.75, failed=True, error="TimeoutError", cache_errors=1),
    ]
    result = measured_result(s, records, {"hits": 2}, keys_stale_at_rest=1)
    assert (result.reads, result.writes, result.hits, result.misses) == (4, 1, 2, 2)
    assert (result.db_reads, result.db_writes) == (1, 1)
    assert result.stale_reads == 1 and result.max_staleness_s == pytest.approx(0.495)
    assert (result.errors, result.timeouts, result.cache_errors) == (1, 1, 1)
    assert result.keys_stale_at_rest == 1
    assert result.consistency["fresh"] == pytest.approx(2 / 3)  # 3 reads returned a version, 1 stale
    assert [row["reads"] for row in result.timeline] == [2, 2]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_the_history_round_trips_through_csv_and_json_lines(tmp_path, suffix):
    records = [
        Record(server=1, kind="write", key=3, start=0.25, end=0.5, version=4, db_writes=1,
               committed_version=4, committed_at=0.4),
        Record(server=0, kind="read", key=3, start=0.75, end=0.8, version=3),
        Record(server=0, kind="read", key=9, start=0.9, at=0.85, end=1.2, failed=True, error="TimeoutError",
               attempt=1),
    ]
    path = write_history(records, tmp_path / f"history{suffix}")
    assert read_history(path) == records
    text = path.read_text()
    assert "staleness_s" in text and ("0.35" in text)  # the oracle's verdict is written beside each request


# -- what a load run refuses (no servers) ---------------------------------------------------------

@pytest.mark.parametrize("changes, field", [
    ({"policy": "write-behind"}, "policy 'write-behind'"),
    ({"cache_capacity": 100}, "cache_capacity"),
    ({"retry_budget": 0.1}, "retry_budget"),
    ({"faults": (Fault("cache-down", 1.0, 2.0, probability=0.5),)}, "probability 0.5"),
    ({"faults": (Fault("flusher-down", 1.0, 2.0),)}, "no flusher"),
])
def test_what_a_load_run_cannot_do_is_refused_naming_the_field(changes, field):
    with pytest.raises(ValueError, match=field):
        check_scenario(scenario(**changes), owned_redis=True, allow_admin_faults=False)


@pytest.mark.parametrize("kind", ["cache-flush", "cache-crash", "cache-set-fail"])
def test_admin_faults_on_a_server_the_run_did_not_start_need_the_flag(kind):
    s = scenario(faults=(Fault(kind, 1.0, 2.0),))
    with pytest.raises(ValueError, match="--allow-admin-faults"):
        check_scenario(s, owned_redis=False, allow_admin_faults=False)
    check_scenario(s, owned_redis=False, allow_admin_faults=True)
    check_scenario(s, owned_redis=True, allow_admin_faults=False)


def test_a_rate_the_client_cannot_drive_is_refused_before_the_run():
    predicted = simulate(scenario(duration_s=2.0))
    cheap = Calibration(cache_rtt_s=1e-4, db_read_s=1e-4, db_write_s=5e-4, db_connections=20,
                        cpu_hit_s=100e-6, cpu_miss_s=500e-6, cpu_write_s=800e-6, cpu_db_read_s=100e-6)
    check_rate(predicted, cheap)  # about 0.07 s of CPU a second: fine
    dear = Calibration(**{**cheap.to_dict(), "cpu_hit_s": 5e-3})
    with pytest.raises(LoadTooHigh, match=r"read_rate 500/s: .*busiest second .* try --set read_rate=\d+"):
        check_rate(predicted, dear)


def test_the_command_refuses_bad_input_in_one_line(capsys):
    assert main(["load", "article", "--set", "policy=write-behind", "--redis-url", "redis://127.0.0.1:1/0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("wtsim: error: ")
    assert main(["load", "article", "--history", "/no/such/folder/h.csv"]) == 2
    assert "--history" in capsys.readouterr().err


# -- short real runs -------------------------------------------------------------------------------

def records_in(run, start: float, end: float, kind: str = "read") -> list[Record]:
    return [r for r in run.records if r.kind == kind and start <= r.start < end]


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.real_postgres)])
def test_a_fault_free_run_matches_its_prediction(database, postgres_load_url):
    url = postgres_load_url if database == "postgres" else None
    run = run_load(scenario(duration_s=3.0, warmup_s=0.5), shared_redis_or_skip(), url)  # the TTL ends at 2 s
    p, m = run.predicted, run.measured
    assert run.rate["kept_up"], run.rate
    assert (m.reads, m.writes) == (p.reads, p.writes)  # the simulator's own arrivals, request for request
    assert abs(m.hit_ratio - p.hit_ratio) <= 0.05, (p.hit_ratio, m.hit_ratio)
    assert m.db_queries_per_s == pytest.approx(p.db_queries_per_s, rel=0.15)
    assert m.errors == 0 and m.keys_stale_at_rest == 0
    assert m.stale_reads <= max(5, 0.01 * m.reads)  # write-through: only the write-to-update window is stale


def test_naive_mode_after_an_outage_with_writes_leaves_keys_stale_at_rest():
    private_redis_or_skip()
    outage = dict(ttl_s=3600.0, write_rate=60.0, duration_s=2.5, warmup_s=0.0,
                  faults=(Fault("cache-down", 0.5, 1.5),), breaker=True)
    naive = run_load(scenario(versioned=False, outage_repair=False, **outage))
    assert naive.measured.keys_stale_at_rest > 0
    assert naive.measured.stale_reads > 0 and naive.measured.consistency["fresh"] < 1
    repaired = run_load(scenario(versioned=True, outage_repair=True, leases=True, **outage))
    assert repaired.measured.keys_stale_at_rest == 0


def test_cache_down_fails_fast_and_cache_unreachable_waits_the_connect_timeout():
    private_redis_or_skip()
    # Unreachable first: connections it leaves broken fail fast afterwards, as refused ones do.
    run = run_load(scenario(breaker=False, cache_timeout_s=0.2, faults=(Fault("cache-unreachable", 0.5, 1.2),
                                                                        Fault("cache-down", 1.6, 2.3))))
    waited = [r for r in records_in(run, 0.55, 0.9) if r.cache_errors]
    assert waited and min(r.latency for r in waited) >= 0.15  # the connect timeout, 0.2 s
    failed = [r for r in records_in(run, 1.65, 2.25) if r.cache_errors]
    assert failed and max(r.latency for r in failed) < 0.15  # refused: about a round trip, plus the DB read
    assert all(r.db_reads for r in failed)  # each read went to the database instead
    assert run.measured.cache_errors >= len(failed) + len(waited)  # each counted in the result


def test_cache_hang_and_cache_slow_show_in_the_latencies():
    private_redis_or_skip()
    run = run_load(scenario(breaker=True, cache_timeout_s=0.2, request_timeout_s=0.1, retries=1,
                            faults=(Fault("cache-hang", 0.5, 1.2), Fault("cache-slow", 1.9, 2.5, factor=60.0))))
    given_up = [r for r in records_in(run, 0.5, 0.6) if r.error == "TimeoutError"]
    assert given_up and all(0.09 <= r.latency <= 0.15 for r in given_up)  # the client's 0.1 s, not the socket's
    assert any(r.attempt == 1 for r in records_in(run, 0.5, 1.0))  # each retried once, as a new request
    assert run.measured.timeouts >= len(given_up) and run.measured.retries > 0
    rtt = run.calibration.cache_rtt_s
    inside = sorted(r.latency for r in records_in(run, 2.0, 2.45) if not r.db_reads and not r.failed)
    outside = sorted(r.latency for r in records_in(run, 2.6, 3.0) if not r.db_reads and not r.failed)
    assert inside and outside
    assert inside[len(inside) // 2] >= 59 * rtt * 0.8  # the median hit paid the added delay
    assert outside[len(outside) // 2] < inside[len(inside) // 2] / 5


def test_a_partition_cuts_only_the_named_app_servers():
    private_redis_or_skip()
    run = run_load(scenario(duration_s=2.5, app_servers=2, breaker=False, cache_timeout_s=0.1,
                            faults=(Fault("partition", 0.8, 1.8, servers=1),)))
    window = records_in(run, 1.0, 1.7)
    cut = [r for r in window if r.server == 0]
    other = [r for r in window if r.server == 1]
    assert cut and other
    assert all(r.db_reads for r in cut)  # no hit: server 0 cannot reach the cache (it fails, or skips it)
    assert any(r.cache_errors for r in cut)
    assert not any(r.cache_errors for r in other)
    assert sum(not r.db_reads for r in other) > 0.5 * len(other)  # server 1 still hits


def test_cache_flush_cache_set_fail_and_cache_crash_on_a_private_server():
    private_redis_or_skip()
    run = run_load(scenario(write_rate=100.0, ttl_s=3600.0, faults=(
        Fault("cache-flush", 0.9), Fault("cache-set-fail", 1.3, 2.0), Fault("cache-crash", 2.3, 2.5))))
    before, after = records_in(run, 0.3, 0.9), records_in(run, 0.9, 1.1)
    # Prefilled, no TTL: every read before the flush hits, unless a cache call timed out on a
    # loaded machine: the read's own GET (it then asks the database), or an earlier write's
    # update (the policy then invalidates that key). After the flush most reads miss.
    invalidated = {w.key for w in run.records if w.kind == "write" and w.cache_errors and w.start < 0.9}
    misses = [r for r in before if r.db_reads]
    assert before and len(misses) <= 0.1 * len(before), misses
    assert all(r.cache_errors or r.key in invalidated for r in misses), misses
    assert sum(r.db_reads for r in after) > 0.5 * len(after)  # the cache restarted empty
    assert any("cache-flush" in what for _, what in run.faults)
    writes = records_in(run, 1.35, 1.95, kind="write")
    rejected = [r for r in writes if r.cache_errors]
    assert rejected  # the cache refused the writes' sets (maxmemory), handled by the policy
    assert not any(r.failed for r in writes)
    down = records_in(run, 2.35, 2.45)
    assert down and all(r.cache_errors or r.db_reads for r in down)  # restarting: refused
    after = records_in(run, 2.55, 2.7)
    assert sum(r.db_reads for r in after) > 0.3 * len(after)  # back, and empty
    assert any("cache-crash" in what for _, what in run.faults)


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.real_postgres)])
def test_db_down_fails_the_requests_that_need_the_database(database, postgres_load_url):
    private_redis_or_skip()
    run = run_load(scenario(duration_s=2.5, write_rate=50.0, faults=(Fault("db-down", 0.7, 1.5),)), None,
                   postgres_load_url)
    writes = records_in(run, 0.75, 1.45, kind="write")
    assert writes and all(r.failed for r in writes)
    hits = [r for r in records_in(run, 0.75, 1.45) if not r.db_reads]
    assert hits and not any(r.failed for r in hits)  # a hit needs no database
    after = records_in(run, 1.6, 2.5, kind="write")
    assert after and not any(r.failed for r in after)


def test_the_command_prints_prediction_beside_measurement_and_writes_the_history(tmp_path, capsys):
    shared_redis_or_skip()
    history = tmp_path / "history.csv"
    assert main(["load", "article", "--redis-url", REDIS_URL, "--set", "duration_s=2", "--set", "warmup_s=0.5",
                 "--set", "read_rate=300", "--set", "write_rate=10", "--set", "n_keys=200",
                 "--history", str(history)]) == 0
    out = capsys.readouterr().out
    assert "predicted" in out and "measured" in out and "difference" in out
    assert "hit ratio" in out and "keys stale at rest" in out and "consistency" in out
    assert len(read_history(history)) > 300
    assert main(["load", "article", "--redis-url", REDIS_URL, "--set", "duration_s=1", "--set", "warmup_s=0",
                 "--set", "read_rate=200", "--set", "write_rate=5", "--set", "n_keys=100", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) >= {"predicted", "measured", "calibration", "rate"}
    assert data["predicted"]["reads"] == data["measured"]["reads"]
    assert oracle.describe(data["measured"]["consistency"]).endswith(("fresh", "s"))


@pytest.fixture
def postgres_load_url(request):
    """A PostgreSQL URL whose search_path is a schema of this test, when the test runs on PostgreSQL."""
    if "postgres" not in request.node.name:
        yield None
        return
    from sqlalchemy import text

    from wtsim import make_engine

    schema = f"wtsim_load_{os.getpid()}"
    try:
        admin = make_engine(DATABASE_URL)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    except Exception as exc:
        unavailable(f"PostgreSQL at {DATABASE_URL}", exc)
    yield f"{DATABASE_URL}?options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()


def test_redis_server_is_needed_for_the_default_or_the_local_one_is_used(monkeypatch):
    from wtsim.load import servers

    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert servers.redis_server_binary() is None
    with pytest.raises(FileNotFoundError, match="redis-server is not installed"):
        servers.PrivateRedis()


def test_bench_load_reports_the_hit_rate_it_achieved():
    from wtsim.load.bench import bench_load, format_load_bench

    figures = bench_load(shared_redis_or_skip(), read_rate=400.0, duration_s=2.0)
    assert figures["hit_ratio"] == 1.0 and figures["recorded"] > 600
    assert 300 < figures["hit_reads_per_s"] < 500  # 400 asked: what a warm cache served after the warm-up
    text = format_load_bench({**figures, "target": 2000.0})
    assert "hits achieved (target >= 2,000/s)" in text and "BELOW TARGET" in text


def test_a_run_that_fell_behind_is_one_line_and_exit_code_2(monkeypatch, capsys, tmp_path):
    """The command's verdict on a run whose client did not keep up (the run itself faked: its rate)."""
    import wtsim.load.run as load_run
    from wtsim.load import LoadRun

    def fake_run_load(scenario, *args, **kwargs):
        result = simulate(scenario)
        calibration = Calibration(1e-4, 1e-4, 5e-4, 20, 1e-4, 5e-4, 8e-4)
        rate = {"intended_per_s": 4000.0, "achieved_per_s": 1853.0, "kept_up": False,
                "worst_second": {"t": 3, "on_time": 0.21}, "lag_s": {"p50": 0.1, "p99": 0.316, "max": 0.4}}
        record = Record(server=0, kind="read", key=1, start=0.5, end=0.6, version=1)
        return LoadRun(scenario, result, result, calibration, rate, [], "redis", "sqlite", [record])

    monkeypatch.setattr(load_run, "run_load", fake_run_load)
    history = tmp_path / "h.jsonl"
    assert main(["load", "article", "--set", "duration_s=2", "--history", str(history)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did not keep up: in second 3 only 21% of the requests started within 100 ms" in err
    assert "(1,853 of 4,000 requests/s on time)" in err
    assert len(read_history(history)) == 1  # the history is written all the same


def test_kept_up_means_every_second_started_its_requests_on_time():
    from wtsim.load.run import _LoadRun

    def verdict(late_in_second_2: int) -> dict:
        runner = _LoadRun(scenario(duration_s=3.0), "redis://unused", False, "sqlite://", print, None)
        runner.records = [Record(server=0, kind="read", key=1, at=t / 10, start=t / 10 + (
            0.5 if 20 <= t < 20 + late_in_second_2 else 0.001)) for t in range(30)]
        runner.intended, runner.lags = 30, [r.start - r.at for r in runner.records]
        return runner._rate()

    assert verdict(0)["kept_up"] and verdict(1)["kept_up"]  # 1 of 10 late in second 2: 90% on time
    late = verdict(3)
    assert not late["kept_up"] and late["worst_second"] == {"t": 2, "on_time": 0.7}
    assert late["achieved_per_s"] == pytest.approx(27 / 3)


def test_run_load_works_where_an_event_loop_already_runs():
    import asyncio

    async def in_a_notebook():
        return run_load(scenario(duration_s=1.5, warmup_s=0.5, read_rate=200.0), shared_redis_or_skip())

    run = asyncio.run(in_a_notebook())
    assert run.measured.reads == run.predicted.reads > 0
