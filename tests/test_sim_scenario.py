"""Scenarios: validation that names the field, TOML files, and ``field=value`` overrides."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from wtsim.sim import Burst, Fault, Request, Scenario, load_scenario, parse_override, run, scenario_names
from wtsim.sim.commands import parse_vary
from wtsim.sim.scenario import FIELD_NAMES, FIELD_SPECS, SCENARIO_DIR
from wtsim.sim.spec import Spec, number


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"read_rate": -1}, "read_rate"),
        ({"write_rate": -0.5}, "write_rate"),
        ({"n_keys": 0}, "n_keys"),
        ({"n_keys": 2.5}, "n_keys"),
        ({"zipf_alpha": -0.1}, "zipf_alpha"),
        ({"duration_s": 0}, "duration_s"),
        ({"warmup_s": 10}, "warmup_s"),
        ({"warmup_s": -1}, "warmup_s"),
        ({"seed": -1}, "seed"),
        ({"policy": "write-around"}, "policy"),
        ({"service": "uniform"}, "service"),
        ({"ttl_s": 0}, "ttl_s"),
        ({"cache_capacity": 0}, "cache_capacity"),
        ({"cache_rtt_s": -0.001}, "cache_rtt_s"),
        ({"cache_timeout_s": 0}, "cache_timeout_s"),
        ({"db_connections": 0}, "db_connections"),
        ({"app_servers": 0}, "app_servers"),
        ({"breaker_threshold": 0}, "breaker_threshold"),
        ({"breaker_cooldown_s": 0}, "breaker_cooldown_s"),
        ({"versioned": "yes"}, "versioned"),
        ({"read_rate": float("nan")}, "read_rate"),
        ({"read_rate": "fast"}, "read_rate"),
    ],
)
def test_bad_field_raises_naming_it(changes, field):
    """Each out-of-range field raises ValueError whose message starts with the field's name."""
    with pytest.raises(ValueError, match=rf"^{field} must be"):
        Scenario(**changes)


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        (dict(kind="cache-melt", start_s=1), "fault kind must be one of"),
        (dict(kind="cache-down", start_s=2, end_s=2), "end_s must be"),
        (dict(kind="cache-down", start_s=2, end_s=1), "end_s must be"),
        (dict(kind="cache-down", start_s=-1), "start_s must be"),
        (dict(kind="cache-set-fail", start_s=1, probability=1.5), r"probability must be in \[0, 1\]"),
        (dict(kind="cache-set-fail", start_s=1, probability=-0.1), r"probability must be in \[0, 1\]"),
        (dict(kind="cache-slow", start_s=1), "factor >= 1"),
        (dict(kind="cache-slow", start_s=1, factor=0.5), "factor >= 1"),
        (dict(kind="cache-down", start_s=1, factor=3), "factor applies to cache-slow"),
        (dict(kind="partition", start_s=1), "partition fault needs servers"),
        (dict(kind="partition", start_s=1, servers=0), "servers must be an integer >= 1"),
        (dict(kind="cache-flush", start_s=1, probability=0.5), "takes no servers or probability"),
    ],
)
def test_bad_fault_raises(fault, words):
    """A fault with an unknown kind or out-of-range window, probability or factor is refused."""
    with pytest.raises(ValueError, match=words):
        Fault(**fault)


def test_fault_must_fit_the_scenario():
    """A fault cut-off count above app_servers, or starting after the run, names the fault."""
    with pytest.raises(ValueError, match=r"faults\[0\]\.servers must be <= app_servers \(2\)"):
        Scenario(app_servers=2, faults=(Fault("partition", 1, 2, servers=3),))
    with pytest.raises(ValueError, match=r"faults\[0\]\.start_s must be < duration_s"):
        Scenario(duration_s=5, faults=(Fault("cache-down", 6, 7),))


def test_bad_burst_and_request_raise():
    """Bursts and scripted requests check their own fields, and requests must fit the scenario."""
    with pytest.raises(ValueError, match="burst end_s must be"):
        Burst(3, 2, write_factor=2)
    with pytest.raises(ValueError, match="burst write_factor must be"):
        Burst(1, 2, write_factor=-1)
    with pytest.raises(ValueError, match="request kind must be"):
        Request(0.1, "delete", 1)
    with pytest.raises(ValueError, match=r"requests\[0\]\.key must be in 1..n_keys \(5\)"):
        Scenario(n_keys=5, requests=(Request(0.1, "read", 6),))


def test_tables_become_dataclasses_and_lists_become_tuples():
    """Faults, bursts and requests given as dicts in lists are turned into frozen tuples."""
    s = Scenario(faults=[{"kind": "cache-down", "start_s": 1, "end_s": 2}], bursts=[{"start_s": 1, "end_s": 2}])
    assert s.faults == (Fault("cache-down", 1, 2),)
    assert s.bursts == (Burst(1, 2),)
    with pytest.raises(ValueError, match=r"unknown field 'until' in faults\[0\]; allowed: kind, start_s"):
        Scenario(faults=[{"kind": "cache-down", "start_s": 1, "until": 2}])


def test_replace_checks_and_keeps_the_rest():
    """replace() applies changes, validates them, and refuses unknown fields listing the allowed ones."""
    base = Scenario(read_rate=100)
    changed = base.replace(ttl_s=30)
    assert changed.ttl_s == 30.0 and changed.read_rate == 100.0 and base.ttl_s is None
    with pytest.raises(ValueError, match="read_rate must be"):
        base.replace(read_rate=-5)
    with pytest.raises(ValueError, match=r"unknown field 'ttl' in Scenario.replace\(\); allowed fields: name,"):
        base.replace(ttl=3)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ttl_s=30", ("ttl_s", 30.0)),
        ("ttl_s=none", ("ttl_s", None)),
        ("cache_capacity=None", ("cache_capacity", None)),
        ("n_keys=1e4", ("n_keys", 10000)),
        ("versioned=true", ("versioned", True)),
        ("breaker=off", ("breaker", False)),
        ("policy=none", ("policy", "none")),
        (" read_rate = 2500 ", ("read_rate", 2500.0)),
        ('faults=[{kind="cache-down", start_s=2, end_s=4}]', ("faults", [{"kind": "cache-down", "start_s": 2, "end_s": 4}])),
    ],
)
def test_parse_override_converts_to_the_field_type(text, expected):
    """--set values become the field's type: numbers, None for 'none', booleans, TOML for tuples."""
    assert parse_override(text) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("ttl_s", "expected field=value"),
        ("=3", "expected field=value"),
        ("speed=3", "unknown field 'speed' in --set; allowed fields: name, duration_s"),
        ("n_keys=2.5", "n_keys must be an integer"),
        ("n_keys=none", "n_keys must be an integer"),
        ("read_rate=lots", "read_rate must be a number"),
        ("versioned=maybe", "versioned must be true or false"),
        ("faults=[oops", "faults takes a TOML inline array"),
    ],
)
def test_parse_override_rejects_bad_input(text, words):
    """A malformed or mistyped --set raises ValueError with a one-line message naming the field."""
    with pytest.raises(ValueError, match=words) as info:
        parse_override(text)
    assert "\n" not in str(info.value)


def test_with_overrides_applies_and_validates():
    """with_overrides() applies several --set strings and then checks the whole scenario."""
    s = Scenario().with_overrides(["read_rate=50", "ttl_s=2.5", "versioned=yes"])
    assert (s.read_rate, s.ttl_s, s.versioned) == (50.0, 2.5, True)
    with pytest.raises(ValueError, match="warmup_s must be < duration_s"):
        Scenario().with_overrides(["duration_s=1"])


@pytest.mark.parametrize("name", scenario_names())
def test_every_scenario_file_loads_and_round_trips(name):
    """Each data/scenarios file loads, is named after its stem, and survives to_dict -> from_dict."""
    scenario = load_scenario(name)
    assert scenario.name == name
    assert Scenario.from_dict(scenario.to_dict()) == scenario
    assert (SCENARIO_DIR / f"{name}.toml").read_text().startswith("#"), "each file opens with what it teaches"


def test_the_required_scenarios_are_there():
    """The article, an outage, flaky writes, a partition, a cold start and Black Friday all exist."""
    assert {"article", "redis-outage", "flaky-cache-writes", "partition", "cold-start", "black-friday"} <= set(
        scenario_names()
    )


def test_toml_unknown_field_lists_the_allowed_ones(tmp_path):
    """An unknown key in a TOML file raises ValueError naming the file, the key and the allowed fields."""
    path = tmp_path / "typo.toml"
    path.write_text("read_rate = 10\nreed_rate = 20\n")
    with pytest.raises(ValueError, match=r"unknown field 'reed_rate' in .*typo.toml; allowed fields: "):
        Scenario.from_toml(path)
    path.write_text("read_rate = [\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        Scenario.from_toml(path)


def test_toml_none_and_nested_tables(tmp_path):
    """A TOML file can say "none" for a nullable field and list faults as [[faults]] tables."""
    path = tmp_path / "custom.toml"
    path.write_text('ttl_s = "none"\n[[faults]]\nkind = "cache-hang"\nstart_s = 1.0\nend_s = 2.0\n')
    s = Scenario.from_toml(path)
    assert s.name == "custom" and s.ttl_s is None
    assert s.faults == (Fault("cache-hang", 1.0, 2.0),)


def test_unknown_scenario_name_lists_the_known_ones():
    """A bare name that is not in data/scenarios raises FileNotFoundError listing the known ones."""
    with pytest.raises(FileNotFoundError, match="unknown scenario 'nope'; known scenarios: article"):
        load_scenario("nope")
    with pytest.raises(FileNotFoundError, match="scenario file not found"):
        load_scenario("missing/file.toml")


def test_field_names_are_the_documented_contract():
    """The contract's field names exist on Scenario."""
    contract = {
        "name", "duration_s", "warmup_s", "seed", "read_rate", "write_rate", "n_keys", "zipf_alpha", "policy",
        "versioned", "outage_repair", "breaker", "breaker_threshold", "breaker_cooldown_s", "ttl_s",
        "cache_capacity", "prefill", "cache_rtt_s", "db_read_s", "db_write_s", "db_connections",
        "cache_timeout_s", "app_servers", "faults", "service",
    }
    assert contract <= set(FIELD_NAMES)


def test_policy_none_is_a_policy_too():
    """policy="none" runs every read and write against the database through the same driver."""
    result = run(Scenario(policy="none", duration_s=2, warmup_s=0.5, read_rate=200, write_rate=20, n_keys=50))
    assert result.hits == 0 and result.misses == result.reads > 0
    assert result.db_reads == result.reads and result.db_writes == result.writes
    assert result.stale_reads == 0


# -- the declarations drive everything ------------------------------------------------------------

_KIND_TYPES = {"number": float, "integer": int, "flag": bool, "text": str, "path": str, "choice": str}


@pytest.mark.parametrize("name", FIELD_NAMES)
def test_every_field_is_declared_with_a_doc_that_agrees_with_its_annotation(name):
    """Each field carries a Spec with a one-line doc; its kind and nullability match the type hint."""
    spec = FIELD_SPECS[name]
    assert isinstance(spec, Spec)
    assert spec.doc and "\n" not in spec.doc
    hint = typing.get_type_hints(Scenario)[name]
    args = set(typing.get_args(hint)) or {hint}
    assert spec.nullable == (type(None) in args), "None allowed exactly where the hint says | None"
    assert spec.nullable == bool(spec.none), "a nullable field says what None means"
    if spec.kind == "items":
        assert typing.get_origin(hint) is tuple and typing.get_args(hint)[0] is spec.cls
    else:
        assert args - {type(None)} == {_KIND_TYPES[spec.kind]}
    assert spec.check(name, getattr(Scenario(), name)) == getattr(Scenario(), name), "the default passes"


@pytest.mark.parametrize("name", [name for name, spec in FIELD_SPECS.items() if spec.nullable])
def test_nullable_fields_take_none_in_toml_set_and_vary(name, tmp_path):
    """Every field declared with a meaning for None reads "none" from TOML, --set and --vary."""
    path = tmp_path / "nulls.toml"
    path.write_text(f'{name} = "none"\n')
    assert getattr(Scenario.from_toml(path), name) is None
    assert parse_override(f"{name}=none") == (name, None)
    assert parse_vary(f"{name}=none,NULL") == (name, [None, None])


def test_none_is_refused_where_the_declaration_gives_it_no_meaning(tmp_path):
    """A field without a meaning for None keeps "none" as a string, and its check refuses it."""
    path = tmp_path / "nulls.toml"
    path.write_text('n_keys = "none"\n')
    with pytest.raises(ValueError, match=r"^n_keys must be an integer >= 1, got 'none'$"):
        Scenario.from_toml(path)
    with pytest.raises(ValueError, match="^duration_s must be a number > 0 s, got None$"):
        Scenario(duration_s=None)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ttl_s": 0}, "ttl_s must be a number > 0 s or None, got 0"),
        ({"read_rate": -1}, "read_rate must be a number >= 0 per second, got -1"),
        ({"zipf_alpha": -0.5}, "zipf_alpha must be a number >= 0, got -0.5"),
        ({"cache_capacity": 0.0}, "cache_capacity must be an integer >= 1 or None, got 0"),
        ({"service": "uniform"}, "service must be one of 'exponential', 'deterministic'; got 'uniform'"),
        ({"policy": "write-around"}, "policy must be one of 'none', 'cache-aside', 'write-through', 'write-behind'; got 'write-around'"),
        ({"faults": 3}, "faults must be a list of Fault (or of tables), got 3"),
    ],
)
def test_error_messages_say_the_declared_range_and_unit(changes, message):
    """The whole message comes from the declaration: the bound, strict or not, the unit, "or None"."""
    with pytest.raises(ValueError) as info:
        Scenario(**changes)
    assert str(info.value) == message
    (name,) = changes
    spec = FIELD_SPECS[name]
    if spec.kind in ("number", "integer"):
        assert f"{name} must be {spec.allowed}, got" in message


def test_only_lists_of_tables_cannot_be_varied():
    """--vary asks each declaration; the item lists say no, every other field yields its values."""
    fixed = sorted(name for name, spec in FIELD_SPECS.items() if not spec.varies)
    assert fixed == ["bursts", "faults", "requests"]
    for name in fixed:
        with pytest.raises(ValueError, match=f"--vary cannot vary {name}"):
            parse_vary(f"{name}=[]")
    assert parse_vary("seed=1,2") == ("seed", [1, 2])


def test_a_new_declaration_is_checked_with_no_other_edit():
    """A field added by one declaration (here in a subclass) is checked, parsed and read by its Spec."""

    @dataclasses.dataclass(frozen=True, slots=True)
    class Longer(Scenario):
        drain_s: float | None = number(2.0, "extra time for requests in flight", strict=True, none="no limit")

    assert Longer(drain_s=3).drain_s == 3.0 and Longer(drain_s=None).drain_s is None
    with pytest.raises(ValueError, match=r"^drain_s must be a number > 0 s or None, got 0$"):
        Longer(drain_s=0)
    spec = dataclasses.fields(Longer)[-1].metadata["spec"]
    assert spec.parse("drain_s", "none") is None and spec.parse("drain_s", "1.5") == 1.5
    assert spec.load("None") is None
