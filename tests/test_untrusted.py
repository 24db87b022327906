"""pipe.untrusted: bounded JSON (size, depth, encodings, duplicate keys, huge integers, non-objects), json_depth and text().

The hostile inputs it feeds the parsers (tests/support/inputs.py) are shared by the other parser tests: shapes a server, the
Docker daemon or a committed file can send."""

import codecs
import json
import re
import string

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipe import untrusted
from pipe.untrusted import MAX_DEPTH, MAX_JSON, MAX_TEXT, NotJson
from tests.support.budgets import EXAMPLE_DEADLINE_MS
from tests.support.inputs import ADVERSARIAL, ADVERSARIAL_BYTES, BIG_TEXTS, with_examples

LIMITS = settings(max_examples=200, deadline=EXAMPLE_DEADLINE_MS)  # per example: a parser that backtracks or goes quadratic fails


REASON = re.compile(
    r"is more than \d+ KB|is UTF-16 text|is not UTF-8 text|nests JSON more than 16 levels deep"
    r"|is not valid JSON(?: \(line \d+, column \d+\))?|is JSON but not an object")


def refusal(data, **options) -> str:
    with pytest.raises(NotJson) as caught:
        untrusted.json_object(data, **options)
    assert caught.value.reason == str(caught.value)
    return caught.value.reason


# Warm up the regular expressions before any deadline applies.
untrusted.json_or_none(b'{"a": [1]}')

# --- what is accepted --------------------------------------------------------------------------------------------

STS_ANSWER = b'{"access_token":"ya29.d.c0AbC","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":3599}'
IAM_DENIED = (
    '{"error":{"code":403,"message":"Permission \'iam.serviceAccounts.getAccessToken\' denied on resource (or it may not exist).",'
    '"status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"IAM_PERMISSION_DENIED",'
    '"domain":"iam.googleapis.com","metadata":{"permission":"iam.serviceAccounts.getAccessToken"}}]}}')


@pytest.mark.parametrize("data", [STS_ANSWER, IAM_DENIED, IAM_DENIED.encode()])
def test_google_answers_parse_as_json_does(data):
    assert untrusted.json_object(data) == json.loads(data)


def test_a_utf8_bom_is_ignored():
    assert untrusted.json_object(codecs.BOM_UTF8 + STS_ANSWER)["expires_in"] == 3599
    assert untrusted.json_object("\ufeff" + STS_ANSWER.decode())["token_type"] == "Bearer"


def test_the_nesting_cap_is_exactly_max_depth():
    def nested(levels: int) -> str:
        return '{"a":' * (levels - 1) + "[1]" + "}" * (levels - 1)

    assert untrusted.json_depth(nested(MAX_DEPTH)) == MAX_DEPTH
    assert untrusted.json_object(nested(MAX_DEPTH))
    assert refusal(nested(MAX_DEPTH + 1)) == f"nests JSON more than {MAX_DEPTH} levels deep"


def test_brackets_and_escaped_quotes_inside_strings_do_not_count_as_nesting():
    text = json.dumps({"a": "[" * 100 + '\\"{{{' + "{" * 100, "b\"[[": ["]]]"]})
    assert untrusted.json_depth(text) == 2
    assert untrusted.json_object(text)["a"].startswith("[[[")


def test_the_size_cap_counts_bytes_including_a_bom():
    padded = b'{"a":"' + b"x" * (MAX_JSON - 8) + b'"}'
    assert len(padded) == MAX_JSON
    assert len(untrusted.json_object(padded)["a"]) == MAX_JSON - 8
    assert refusal(padded + b" ") == "is more than 64 KB"
    assert refusal(codecs.BOM_UTF8 + padded) == "is more than 64 KB"
    # Characters are not bytes: 40,000 'é' are 80,000 bytes.
    assert refusal(json.dumps({"a": "é" * 40_000}, ensure_ascii=False)) == "is more than 64 KB"


def test_a_custom_limit_applies():
    assert untrusted.json_object(b'{"a": 1}', limit=8) == {"a": 1}
    assert refusal(b'{"a": 12}', limit=8).startswith("is more than")


def test_integers_up_to_pythons_limit_parse_and_longer_ones_are_refused_without_quoting():
    assert untrusted.json_object('{"n": ' + "7" * 4300 + "}")["n"] > 10**4299
    reason = refusal('{"n": ' + "7" * 4301 + "}")
    assert reason == "is not valid JSON" and "7777" not in reason


def test_json_constants_python_accepts_are_kept():
    parsed = untrusted.json_object(b'{"a": NaN, "b": -Infinity, "c": 1e999}')
    assert parsed["a"] != parsed["a"] and parsed["b"] == float("-inf") and parsed["c"] == float("inf")


# --- what is refused ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"])
def test_utf16_and_utf32_are_refused_by_name(codec):
    assert refusal('{"access_token": "x"}'.encode(codec)) == "is UTF-16 text"


@pytest.mark.parametrize("data", [
    b'{"a": "\xff"}', b'{"a": "\xc3"}', b'{"a": "\xe2\x82"}', b'{"a": "\xc0\xaf"}', b'{"a": "\xed\xa0\x80"}', b"\x80{}",
    '{"a": "\udcff"}',  # a lone surrogate (an undecodable byte in a variable)
])
def test_text_that_is_not_utf8_is_refused(data):
    assert refusal(data) == "is not UTF-8 text"


@pytest.mark.parametrize("data", [b"[]", b'["a"]', b'"text"', b"42", b"null", b"true", b"  [1, 2]  "])
def test_json_that_is_not_an_object_is_refused(data):
    assert refusal(data) == "is JSON but not an object"


@pytest.mark.parametrize("data", [b"", b"{", b"}", b'{"a": }', b"<html><body>502 Bad Gateway</body></html>", b'{"a": 1,}',
                                  b'{"a": 1} {"b": 2}', b"{'a': 1}", b'{"a": "line\nbreak"}'])
def test_invalid_json_is_refused_with_its_position_only(data):
    reason = refusal(data)
    assert re.fullmatch(r"is not valid JSON \(line \d+, column \d+\)", reason), reason


def test_a_refusal_never_quotes_the_body():
    secret = "ya29.a0AfH6SMBx3kYqZ9vL2mN8pQ4rT6uW1yE5iO7aS3dF"
    for body in (f'{{"access_token": {secret}}}', f'["{secret}"]', f'{{"access_token": "{secret}"' + "}" * 20, f'{{"a": "{secret}\x01"}}'):
        assert "ya29" not in refusal(body) and "AfH6" not in refusal(body)


def test_duplicate_keys_are_refused_only_when_asked_and_at_any_depth():
    assert untrusted.json_object(b'{"a": 1, "a": 2}') == {"a": 2}
    assert refusal(b'{"a": 1, "a": 2}', unique_keys=True) == "has the field 'a' twice"
    assert refusal(b'{"x": {"b": 1, "c": 2, "b": 3}}', unique_keys=True) == "has the field 'b' twice"
    assert refusal(b'{"x": [{"k": 1}, {"k": 2, "k": 3}]}', unique_keys=True) == "has the field 'k' twice"
    assert untrusted.json_object(b'{"x": [{"k": 1}, {"k": 2}]}', unique_keys=True) == {"x": [{"k": 1}, {"k": 2}]}


def test_a_duplicate_key_is_named_printable_and_cut():
    key = "\x1b[31m\u202e" + "k" * 200
    reason = refusal("{" + f"{json.dumps(key)}: 1, {json.dumps(key)}: 2" + "}", unique_keys=True)
    assert reason.isprintable() and "\x1b" not in reason and "\u202e" not in reason
    assert reason.startswith("has the field '\\x1b[31m\\u202e") and len(reason) < 120


def test_not_json_is_a_value_error():
    assert issubclass(NotJson, ValueError)


def test_json_or_none_keeps_objects_and_drops_the_rest():
    assert untrusted.json_or_none(STS_ANSWER)["access_token"] == "ya29.d.c0AbC"
    assert untrusted.json_or_none(IAM_DENIED)["error"]["code"] == 403
    for data in (None, b"", "", b"[]", b"<html>", b"\xff\xfe{\x00}\x00", "[" * 100_000):
        assert untrusted.json_or_none(data) is None


# --- properties ---------------------------------------------------------------------------------------------------

def nesting(value) -> int:
    if isinstance(value, list):
        return 1 + max(map(nesting, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(nesting, value.values()), default=0)
    return 0


@LIMITS
@given(ADVERSARIAL_BYTES, st.booleans())
@with_examples(*(t.encode() for t in BIG_TEXTS), rest=(False,))
@example(b'{"a":' * 12_000 + b"1" + b"}" * 12_000, True)
@example(b"[" * 5000 + b'"' + b"]" * 5000, False)
@example(b'{"a": ' + b"9" * 60_000 + b"}", False)
def test_any_bytes_give_an_object_or_a_reason_in_the_users_terms(data, unique_keys):
    try:
        parsed = untrusted.json_object(data, unique_keys=unique_keys)
    except NotJson as error:
        assert REASON.fullmatch(error.reason) or (unique_keys and error.reason.startswith("has the field ")), error.reason
        assert error.reason.isprintable() and len(error.reason) < 120
        return
    assert isinstance(parsed, dict) and len(data) <= MAX_JSON and nesting(parsed) <= MAX_DEPTH


@settings(LIMITS)  # findall over 300 KB of brackets takes ~100 ms in CPython; a quadratic count takes minutes
@given(ADVERSARIAL)
@with_examples(*BIG_TEXTS)
def test_json_depth_is_linear_and_never_below_what_json_nests(text):
    depth = untrusted.json_depth(text)
    assert 0 <= depth <= text.count("[") + text.count("{")
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return
    assert depth >= nesting(parsed)  # what json.loads would recurse into is never undercounted


JSON_TEXT = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(alphabet='[]{}"\\:,' + string.ascii_letters, max_size=10)),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(alphabet='[]{}"\\a', max_size=4), children, max_size=3)),
    max_leaves=40,
).map(json.dumps)


@LIMITS
@given(JSON_TEXT)
def test_json_depth_counts_valid_json_exactly(text):
    assert untrusted.json_depth(text) == nesting(json.loads(text))


@LIMITS
@given(st.one_of(ADVERSARIAL, ADVERSARIAL_BYTES, st.none()), st.integers(0, 3 * MAX_TEXT))
@with_examples(*BIG_TEXTS, *(t.encode() for t in BIG_TEXTS[:4]), rest=(MAX_TEXT,))
def test_text_is_bounded_and_never_raises(data, limit):
    result = untrusted.text(data, limit)
    assert isinstance(result, str) and len(result) <= limit
    if isinstance(data, str):
        assert result == data[:limit]
    elif isinstance(data, bytes) and data.isascii():
        assert result == data.decode()[:limit]


def test_text_decodes_with_replacement_and_cuts_characters_not_bytes():
    assert untrusted.text(None) == "" and untrusted.text(b"") == ""
    assert untrusted.text(b"denied: \xff\xfe caf\xc3\xa9") == "denied: \ufffd\ufffd café"
    emoji = "😀" * (MAX_TEXT + 10)
    assert untrusted.text(emoji.encode()) == "😀" * MAX_TEXT  # four bytes each: the whole limit is read
    assert untrusted.text("x" * 300_000) == "x" * MAX_TEXT
    assert untrusted.text(b"ab" * 10, 5) == "ababa"
