"""The cache payload: a JSON envelope carrying the value and its version; never pickle."""

from __future__ import annotations

import ast
import datetime
import json
import os
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import wtsim
from wtsim import codec
from wtsim.codec import FOREIGN, Entry, decode, encode, encode_tombstone

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
json_dicts = st.dictionaries(st.text(), json_values, max_size=6)
versions = st.none() | st.integers()

# The article stores json.dumps(serialize(product)): a plain dict, no envelope.
ARTICLE_PAYLOAD = json.dumps({"id": "p-1", "name": "Widget", "price_cents": 999, "stock": 50})


@given(json_dicts, versions)
def test_round_trip(data, version):
    """decode(encode(data, version)) gives back the same data and version."""
    assert decode(encode(data, version)) == Entry(data=data, version=version)


@given(json_dicts, versions)
def test_round_trip_from_bytes(data, version):
    """Redis answers bytes: they decode like the str that was stored."""
    assert decode(encode(data, version).encode("utf-8")) == Entry(data=data, version=version)


@pytest.mark.parametrize("version", [None, 0, 7, 2**53])
def test_tombstone_round_trip(version):
    """A tombstone decodes as a tombstone, with its version and no data."""
    entry = decode(encode_tombstone(version))
    assert entry.tombstone
    assert entry.data is None
    assert entry.version == version
    assert entry is not FOREIGN


def test_an_entry_is_not_a_tombstone():
    """A value's envelope never reads as a tombstone, even when its data is empty."""
    assert not decode(encode({}, 3)).tombstone


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x80\x81\xfe\xff",  # not UTF-8
        b"\x00\x01garbage",
        b"not json at all",
        b'{"v": 1, "d": {"stock": 5}',  # truncated envelope
        ARTICLE_PAYLOAD.encode(),  # the article's plain dict
        b"[1, 2, 3]",
        b"42",
        b"3.5",
        b'"a string"',
        b"null",
        b"true",
        b'{"v": true, "d": {"stock": 5}}',  # a bool is not a version
        b'{"v": 1.0, "d": {"stock": 5}}',  # nor is a float
        b'{"v": "1", "d": {"stock": 5}}',
        b'{"v": 1, "d": [1, 2]}',  # data must be a dict
        b'{"v": 1, "d": "x"}',
        b'{"v": 1}',
        b'{"v": null, "t": true}',  # a bool is not the tombstone mark either
        b"NaN",
        b"\x80\x04\x95\x0e\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x05stock\x94K\x05s.",  # a pickled {"stock": 5}
    ],
)
def test_decode_answers_foreign_for_anything_else(raw):
    """decode never raises: garbage, foreign JSON and non-envelopes all decode as FOREIGN."""
    assert decode(raw) is FOREIGN
    assert decode(raw) == FOREIGN


@given(st.binary())
def test_decode_never_raises_on_arbitrary_bytes(raw):
    """Any bytes at all decode to an Entry, never an exception."""
    assert isinstance(decode(raw), Entry)


@pytest.mark.parametrize("data", [[1, 2], None, "x", 5, ({"a": 1},)])
def test_encode_rejects_non_dict(data):
    """serialize must return a dict: anything else is refused with a message saying so."""
    with pytest.raises(TypeError, match="dict"):
        encode(data)


@pytest.mark.parametrize(
    "data, error",
    [
        ({"price": math.nan}, ValueError),
        ({"price": math.inf}, ValueError),
        ({"nested": {"x": -math.inf}}, ValueError),
        ({"tags": {"a", "b"}}, TypeError),
        ({"at": datetime.datetime(2024, 1, 1)}, TypeError),
        ({"raw": b"bytes"}, TypeError),
    ],
)
def test_encode_rejects_values_that_are_not_json(data, error):
    """NaN, infinities, sets, datetimes and bytes are not JSON and are refused, not mangled."""
    with pytest.raises(error):
        encode(data)


PICKLED_EXPLOIT = b"cbuiltins\nexec\n(Vimport os; os.environ['WTSIM_UNPICKLED'] = '1'\ntR."
"""A protocol-0 pickle, written out (no test imports pickle): loading it would set an environment variable."""


def test_a_pickle_payload_is_never_unpickled():
    """A pickle at the key is foreign data, not code to run."""
    os.environ.pop("WTSIM_UNPICKLED", None)
    assert decode(PICKLED_EXPLOIT) is FOREIGN
    assert "WTSIM_UNPICKLED" not in os.environ


PICKLE_LIKE = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "marshal", "jsonpickle"}


def test_no_wtsim_module_uses_pickle():
    """No module of the package imports pickle or a relative of it (JSON only)."""
    package = Path(wtsim.__file__).parent
    sources = sorted(package.rglob("*.py"))
    assert Path(codec.__file__) in sources  # the scan does look at the package
    offenders = []
    for path in sources:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [(node.module or "").split(".")[0]]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__import__":
                names = [a.value for a in node.args if isinstance(a, ast.Constant)]
            else:
                continue
            offenders += [f"{path.relative_to(package)}:{node.lineno} {n}" for n in names if n in PICKLE_LIKE]
    assert offenders == []


def test_lease_envelope_round_trips_and_is_no_value():
    """A lease decodes as a lease: no data, no version, not a tombstone, not foreign."""
    entry = decode(codec.encode_lease("srv-1-7"))
    assert entry.lease == "srv-1-7" and entry.data is None and not entry.tombstone and entry is not FOREIGN
    assert decode('{"l": 7}') is FOREIGN and decode('{"l": "a", "v": 1}') is FOREIGN


def test_early_recompute_hints_round_trip_and_damaged_ones_are_dropped():
    """delta and expiry travel with the value; a damaged hint keeps the value and drops the hint."""
    entry = decode(codec.encode({"a": 1}, 3, delta=0.05, expires_at=1234.5))
    assert (entry.data, entry.version, entry.delta, entry.expires_at) == ({"a": 1}, 3, 0.05, 1234.5)
    damaged = decode('{"v": 3, "d": {"a": 1}, "x": "soon", "e": 1}')
    assert damaged.data == {"a": 1} and damaged.delta is None and damaged.expires_at is None


@pytest.mark.parametrize("raw", [
    b'{"v":1,"d":{"a":1}}', '{"v":null,"d":{}}', b' {"v":1,"d":{}} ', '{"v":1,"d":{}}\n', b"", "", b"\xff",
    '{"v":1', "null", b"\xef\xbb\xbf{}", "\ufeff{}", '{"v":1,"d":{}}x', b'{"a":NaN}', '"\\ud800"',
    '{"v":1,"d":{}}'.encode("utf-16"), bytearray(b'{"v":2,"d":{}}'), 3, None,
])
def test_the_fast_parse_answers_as_json_loads_does(raw):
    """The hit path's parser gives json.loads's answer, or raises what json.loads raises, on every input."""
    try:
        expected = json.loads(raw)
    except Exception as exc:
        with pytest.raises(type(exc)):
            codec._parse(raw)
        return
    got = codec._parse(raw)
    assert got == expected or (got != got and expected != expected)
