"""Cache keys: an injective encoding of (prefix, namespace, entity_id), Redis Cluster aware.

The article's ``f"wtc:{namespace}:{entity_id}"`` gives ``("a:b", "c")`` and
``("a", "b:c")`` the same key, and turns any ``{...}`` in an id into a hash tag.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wtsim import WriteThroughCache
from wtsim.keys import entry_key, namespace_prefix, parse_key

# Text with the characters that break naive keys, plus any other unicode character. Lone surrogates
# are left out: they are not encodable text (see test_lone_surrogate_is_refused).
tricky = st.text(
    alphabet=st.sampled_from(":{} %*?[]\\é🙂\x00") | st.characters(exclude_categories=["Cs"]), max_size=12
)
entity_ids = tricky | st.integers(min_value=-(10**12), max_value=10**12)
prefixes = tricky.filter(bool)

GLOB_CHARACTERS = set("*?[]\\")


def redis_hash_tag(key: str) -> str | None:
    """The Redis Cluster rule: from the first '{' to the first '}' after it, if non-empty."""
    start = key.find("{")
    if start == -1:
        return None
    end = key.find("}", start + 1)
    if end == -1 or end == start + 1:
        return None
    return key[start + 1 : end]


def test_article_collision_gives_different_keys():
    """("a:b", "c") and ("a", "b:c") share the article's key but not ours."""
    assert f"wtc:{'a:b'}:{'c'}" == f"wtc:{'a'}:{'b:c'}"  # the article's flaw, for the record
    assert entry_key("wtc", "a:b", "c") != entry_key("wtc", "a", "b:c")


def test_documented_examples():
    """The examples in the module docstring are what the function returns."""
    assert entry_key("wtc", "products", "p-1") == "wtc:{products:p-1}"
    assert entry_key("wtc", "a:b", "c") == "wtc:{a%3Ab:c}"
    assert entry_key("wtc", "a", "b:c") == "wtc:{a:b%3Ac}"


@given(prefixes, tricky, entity_ids, tricky, entity_ids)
def test_different_pairs_give_different_keys(prefix, ns1, id1, ns2, id2):
    """Two different (namespace, entity_id) pairs never share a key."""
    if (ns1, str(id1)) != (ns2, str(id2)):
        assert entry_key(prefix, ns1, id1) != entry_key(prefix, ns2, id2)


@given(prefixes, prefixes, tricky, entity_ids)
def test_different_prefixes_give_different_keys(p1, p2, ns, entity_id):
    """Two caches with different prefixes never share a key."""
    if p1 != p2:
        assert entry_key(p1, ns, entity_id) != entry_key(p2, ns, entity_id)


@given(prefixes, tricky, entity_ids)
def test_parse_key_round_trips(prefix, namespace, entity_id):
    """parse_key(entry_key(...)) gives the parts back (an int id comes back as its text)."""
    assert parse_key(entry_key(prefix, namespace, entity_id)) == (prefix, namespace, str(entity_id))


@given(prefixes, tricky, entity_ids)
def test_hash_tag_is_exactly_namespace_and_entity(prefix, namespace, entity_id):
    """Redis Cluster hashes the key on exactly the encoded 'namespace:entity', whatever the input."""
    key = entry_key(prefix, namespace, entity_id)
    expected = f"{quote(namespace, safe='')}:{quote(str(entity_id), safe='')}"
    assert redis_hash_tag(key) == expected


@given(prefixes, tricky, tricky, entity_ids)
def test_namespace_prefix_is_a_literal_prefix_of_its_keys_only(prefix, ns, other_ns, entity_id):
    """namespace_prefix starts every key of its namespace, and no key of another namespace."""
    start = namespace_prefix(prefix, ns)
    assert entry_key(prefix, ns, entity_id).startswith(start)
    if other_ns != ns:
        assert not entry_key(prefix, other_ns, entity_id).startswith(start)


@given(prefixes, tricky)
def test_namespace_prefix_has_no_glob_characters(prefix, namespace):
    """namespace_prefix + '*' is safe in SCAN MATCH: it holds no glob metacharacter."""
    assert not GLOB_CHARACTERS & set(namespace_prefix(prefix, namespace))


def test_parse_key_rejects_foreign_keys():
    """A key not made by entry_key is refused, not mis-parsed."""
    for key in ["wtc:a:b", "wtc:{a:b:c}", "wtc:{a:b", "plain"]:
        with pytest.raises(ValueError, match="not a wtsim entry key"):
            parse_key(key)


@pytest.mark.parametrize(
    "args, error, field",
    [
        ((None, "ns", "id"), TypeError, "prefix"),
        ((b"wtc", "ns", "id"), TypeError, "prefix"),
        (("wtc", 1.5, "id"), TypeError, "namespace"),
        (("wtc", None, "id"), TypeError, "namespace"),
        (("wtc", "ns", None), TypeError, "entity_id"),
        (("wtc", "ns", True), TypeError, "entity_id"),
        (("wtc", "ns", ("a", "b")), TypeError, "entity_id"),
        (("", "ns", "id"), ValueError, "prefix"),
    ],
)
def test_bad_parts_raise_naming_the_field(args, error, field):
    """A wrong type or an empty prefix raises, and the message names the offending field."""
    with pytest.raises(error, match=field):
        entry_key(*args)


def test_lone_surrogate_is_refused():
    """A str that is not valid unicode (a lone surrogate) raises instead of making a key."""
    with pytest.raises(ValueError):
        entry_key("wtc", "ns", "\ud800")


def test_namespace_prefix_rejects_an_empty_prefix():
    """namespace_prefix validates like entry_key does."""
    with pytest.raises(ValueError, match="prefix"):
        namespace_prefix("", "ns")


def test_cache_rejects_an_empty_prefix():
    """WriteThroughCache refuses an empty prefix up front, naming it."""
    import fakeredis

    with pytest.raises(ValueError, match="prefix"):
        WriteThroughCache(fakeredis.FakeRedis(), prefix="")
