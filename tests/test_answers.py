"""pipe.answers: the success bodies of Google STS, IAM Credentials (generateAccessToken, generateIdToken) and a
registry's token service, field by field. Each refusal is one PipeError line naming the service and the field, and
never quotes a token."""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipe import answers
from pipe.errors import PipeError
from tests.support.budgets import EXAMPLE_DEADLINE_MS
from tests.support.inputs import ADVERSARIAL_BYTES, BIG_TEXTS

LIMITS = settings(max_examples=200, deadline=EXAMPLE_DEADLINE_MS)
MAX_LINE = 1200  # the longest template plus 80 echoed characters, each escaped to at most 10

ACCESS_TOKEN = "ya29.d.c0AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdEfGhIjKlMnOp"
ID_TOKEN = ("eyJhbGciOiJSUzI1NiIsImtpZCI6IjEyMyIsInR5cCI6IkpXVCJ9.eyJhdWQiOiJodHRwczovL3N2Yy5hLnJ1bi5hcHAiLCJleHAiOjE3MDAwMDAwMDB9."
            "c2lnbmF0dXJlLW9mLXRoZS1pZC10b2tlbg")
REGISTRY_TOKEN = "eyJhbGciOiJub25lIn0AbCdEfGhIjKlMnOpQrStUvWxYz0123456789+/AbCdEfGh=="  # Artifact Registry's: opaque, base64
# As Google sends them (google-federation.md §2, §4; registry-auth.md §2, §6).
STS_BODY = {"access_token": ACCESS_TOKEN, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer", "expires_in": 3599}
REGISTRY_BODY = {"token": REGISTRY_TOKEN, "expires_in": 43200}
REGISTRY_SERVICE, REGISTRY_FIX = "the token service us-docker.pkg.dev", "the registry's challenge must name Google's token service"


def expire_in(seconds: float, fmt: str = "%Y-%m-%dT%H:%M:%SZ") -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime(fmt)


def iam_body(**changes) -> dict:
    body = {"accessToken": ACCESS_TOKEN, "expireTime": expire_in(3600)}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


def encoded(body) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def refused(check, data, *args) -> str:
    """The refusal's line, checked for what every refusal must be."""
    with pytest.raises(PipeError) as caught:
        check(encoded(data), *args)
    message = caught.value.message
    assert caught.value.exit_code == 1 and str(caught.value) == message
    assert message.isprintable() and len(message) < MAX_LINE, message
    assert ACCESS_TOKEN not in message and ID_TOKEN not in message and REGISTRY_TOKEN not in message
    assert ACCESS_TOKEN[:12] not in message and REGISTRY_TOKEN[-16:] not in message
    return message


def sts_refusal(body) -> str:
    message = refused(answers.check_sts, body)
    assert message.startswith("Google STS answered HTTP 200, but ") and "STS_ENDPOINT" in message
    return message


def iam_refusal(body, method: str = "generateAccessToken") -> str:
    message = refused(answers.check_access_token, body, method)
    assert message.startswith(f"IAM Credentials {method} answered HTTP 200, but ") and "IAM_CREDENTIALS_ENDPOINT" in message
    return message


def registry_refusal(body) -> str:
    message = refused(answers.registry_token, body, REGISTRY_SERVICE, REGISTRY_FIX)
    assert message.startswith(f"{REGISTRY_SERVICE} answered HTTP 200, but ") and message.endswith(f": {REGISTRY_FIX}.")
    return message


def names_field(message: str, field: str) -> bool:
    return f"({field})" in message


# --- accepted answers ---------------------------------------------------------------------------------------------------

def test_googles_answers_are_accepted():
    assert answers.check_sts(encoded(STS_BODY)) is None
    assert answers.check_sts(encoded({"access_token": ACCESS_TOKEN, "expires_in": "3599"})) is None  # OAuth allows a string
    assert answers.check_access_token(encoded(iam_body())) is None
    assert answers.id_token(encoded({"token": ID_TOKEN})) == ID_TOKEN


def test_a_byte_order_mark_is_refused_as_google_auth_would_fail_on_it():
    """google-auth reads a success body with json.loads(data.decode("utf-8")), which refuses a BOM: a check that skipped
    it would pass an answer google-auth then fails on with an unexplained JSONDecodeError."""
    with pytest.raises(json.JSONDecodeError):
        json.loads((b"\xef\xbb\xbf" + encoded(STS_BODY)).decode("utf-8"))
    for check in (answers.check_sts, answers.check_access_token):
        with pytest.raises(PipeError, match="starts with a byte order mark"):
            check(b"\xef\xbb\xbf" + encoded(STS_BODY if check is answers.check_sts else iam_body()))


@pytest.mark.parametrize("short", ["Authenticated", "x" * (answers.MIN_TOKEN - 1), "ya29.short"])
def test_a_token_too_short_to_be_one_is_refused(short):
    """A word redaction would then cut out of every line, the pipe's own ✔ line included."""
    with pytest.raises(PipeError, match="is not a token"):
        answers.check_sts(encoded(dict(STS_BODY, access_token=short)))


def test_registry_tokens_in_both_field_names_and_docker_reads_token_first():
    assert answers.registry_token(encoded(REGISTRY_BODY), REGISTRY_SERVICE, REGISTRY_FIX) == REGISTRY_TOKEN
    at, tok = "at-" + "a1" * 20, "tok-" + "b2" * 20
    assert answers.registry_token(encoded({"access_token": at}), REGISTRY_SERVICE, REGISTRY_FIX) == at
    both = {"token": tok, "access_token": at, "expires_in": 3600, "issued_at": "2026-01-31T12:00:00Z"}
    assert answers.registry_token(encoded(both), REGISTRY_SERVICE, REGISTRY_FIX) == tok


def test_a_token_of_exactly_the_maximum_length_is_accepted():
    body = dict(STS_BODY, access_token="a" * answers.MAX_TOKEN)
    assert answers.check_sts(encoded(body)) is None
    assert names_field(sts_refusal(dict(STS_BODY, access_token="a" * (answers.MAX_TOKEN + 1))), "access_token")


# --- bodies that are not a JSON object ----------------------------------------------------------------------------------

@pytest.mark.parametrize("data, problem", [
    (b"", "its body is not valid JSON (line 1, column 1)"),
    (b'{"access_token": "' + ACCESS_TOKEN.encode() + b'", "expires_in": 3599', "its body is not valid JSON (line 1, column"),
    (b'{"access_token": "\xff\xfe"}', "its body is not UTF-8 text"),
    ('{"access_token": "x"}'.encode("utf-16"), "its body is UTF-16 text"),
    (b'[{"access_token": "x"}]', "its body is JSON but not an object"),
    (b'"' + ACCESS_TOKEN.encode() + b'"', "its body is JSON but not an object"),
    (b'{"a":' * 20 + b"1" + b"}" * 20, "its body nests JSON more than 16 levels deep"),
    (b'{"access_token": "' + b"a" * 70_000 + b'"}', "its body is more than 64 KB"),
    (b'{"expires_in": ' + b"9" * 5000 + b"}", "its body is not valid JSON"),
])
def test_a_body_that_is_not_a_json_object_is_refused_as_the_body(data, problem):
    for message in (sts_refusal(data), iam_refusal(data), iam_refusal(data, "generateIdToken"), registry_refusal(data)):
        assert problem in message and names_field(message, "the body")


# --- Google STS ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, problem", [
    ("access_token", ..., "its access_token is missing"),
    ("access_token", None, "its access_token is missing"),
    ("access_token", [ACCESS_TOKEN], "its access_token is a list, not a string"),
    ("access_token", {"value": ACCESS_TOKEN}, "its access_token is an object, not a string"),
    ("access_token", 12345, "its access_token is a number, not a string"),
    ("access_token", True, "its access_token is true, not a string"),
    ("access_token", "", "its access_token is not a token (0 characters"),
    ("access_token", ACCESS_TOKEN + " ", "its access_token is not a token"),
    ("access_token", "Bearer " + ACCESS_TOKEN, "its access_token is not a token"),
    ("access_token", ACCESS_TOKEN + "\n", "its access_token is not a token"),
    ("access_token", ACCESS_TOKEN + "é", "its access_token is not a token"),
    ("access_token", ACCESS_TOKEN + "\u202e", "its access_token is not a token"),
    ("expires_in", ..., "its expires_in is missing"),
    ("expires_in", None, "its expires_in is missing"),
    ("expires_in", 0, "its expires_in is 0 s, outside 1 s to 12 h"),
    ("expires_in", -1, "its expires_in is -1 s, outside 1 s to 12 h"),
    ("expires_in", 43201, "its expires_in is 43201 s, outside 1 s to 12 h"),
    ("expires_in", 10**12, "outside 1 s to 12 h"),
    ("expires_in", 3599.5, "its expires_in is a number, not a number of seconds"),
    ("expires_in", "3599s", "its expires_in is a string, not a number of seconds"),
    ("expires_in", "-1", "its expires_in is a string"),
    ("expires_in", "٣٦٠٠", "its expires_in is a string"),  # Arabic-Indic digits: int() reads them, Google never sends them
    ("expires_in", "1e3", "its expires_in is a string"),
    ("expires_in", "0", "its expires_in is 0 s"),
    ("expires_in", "9999999", "its expires_in is a string"),
    ("expires_in", [3599], "its expires_in is a list"),
    ("expires_in", True, "its expires_in is true"),
    ("token_type", 1, "its token_type is a number"),
    ("token_type", ["Bearer"], "its token_type is a list"),
    ("issued_token_type", {}, "its issued_token_type is an object"),
])
def test_sts_fields(field, value, problem):
    body = {k: v for k, v in dict(STS_BODY, **{field: value}).items() if v is not ...}
    message = sts_refusal(body)
    assert problem in message and names_field(message, field), message


def test_a_null_optional_field_reads_as_absent():  # Google's JSON mapping: null is the field's default
    assert answers.check_sts(encoded(dict(STS_BODY, issued_token_type=None, token_type=None))) is None


def test_sts_expiry_at_the_bounds_is_accepted():
    for seconds in (1, 2, 3599, 43200, "1", "43200"):
        assert answers.check_sts(encoded(dict(STS_BODY, expires_in=seconds))) is None


def test_an_absurd_expires_in_gives_a_bounded_line():
    with pytest.raises(PipeError) as caught:
        answers.check_sts(b'{"access_token": "ya29.x", "expires_in": ' + b"9" * 4000 + b"}")
    assert len(caught.value.message) < MAX_LINE


# --- IAM Credentials generateAccessToken --------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, field, problem", [
    ({"accessToken": ...}, "accessToken", "its accessToken is missing"),
    ({"accessToken": [ACCESS_TOKEN]}, "accessToken", "its accessToken is a list, not a string"),
    ({"accessToken": ACCESS_TOKEN + " x"}, "accessToken", "its accessToken is not a token"),
    ({"access_token": ACCESS_TOKEN, "accessToken": ...}, "accessToken", "its accessToken is missing"),  # STS's name is not IAM's
    ({"expireTime": 1700000000}, "expireTime", "its expireTime is a number"),
    ({"expireTime": ["2026-01-31T12:00:00Z"]}, "expireTime", "its expireTime is a list"),
    ({"expireTime": True}, "expireTime", "its expireTime is true"),
    ({"expireTime": expire_in(3600, "%Y-%m-%dT%H:%M:%S.123456Z")}, "expireTime", "is not a time like 2026-01-31T12:00:00Z"),
    ({"expireTime": expire_in(3600, "%Y-%m-%dT%H:%M:%S+00:00")}, "expireTime", "is not a time like"),
    ({"expireTime": expire_in(3600, "%Y-%m-%dT%H:%M:%Sz")}, "expireTime", "is not a time like"),
    ({"expireTime": expire_in(3600, "%Y-%m-%d %H:%M:%SZ")}, "expireTime", "is not a time like"),
    ({"expireTime": expire_in(3600, "%Y-%m-%d")}, "expireTime", "is not a time like"),
    ({"expireTime": expire_in(3600, "%a, %d %b %Y %H:%M:%S GMT")}, "expireTime", "is not a time like"),
    ({"expireTime": " " + expire_in(3600)}, "expireTime", "is not a time like"),
    ({"expireTime": "3600s"}, "expireTime", "is not a time like"),
    ({"expireTime": "２０２６-01-31T12:00:00Z"}, "expireTime", "is not a time like"),  # full-width digits
    ({"expireTime": "2026-02-30T12:00:00Z"}, "expireTime", "its expireTime is not a calendar time"),
    ({"expireTime": "2026-01-31T24:00:00Z"}, "expireTime", "its expireTime is not a calendar time"),
    ({"expireTime": "2026-13-01T12:00:00Z"}, "expireTime", "its expireTime is not a calendar time"),
    ({"expireTime": "2026-06-30T23:59:60Z"}, "expireTime", "its expireTime is not a calendar time"),
    ({"expireTime": "0000-01-01T00:00:00Z"}, "expireTime", "its expireTime is not a calendar time"),
    ({"expireTime": "2020-01-31T12:00:00Z"}, "expireTime", "its expireTime 2020-01-31T12:00:00Z is in the past or more than 12 hours ahead"),
    ({"expireTime": "9999-12-31T23:59:59Z"}, "expireTime", "its expireTime 9999-12-31T23:59:59Z is in the past or more than 12 hours ahead"),
    ({"expireTime": expire_in(-600)}, "expireTime", "is in the past or more than 12 hours ahead"),
    ({"expireTime": expire_in(43200 + 900)}, "expireTime", "is in the past or more than 12 hours ahead"),
])
def test_generate_access_token_fields(changes, field, problem):
    message = iam_refusal(iam_body(**changes))
    assert problem in message and names_field(message, field), message


def test_a_missing_expire_time_is_reported_as_missing():
    assert "its expireTime is missing" in iam_refusal(iam_body(expireTime=...))


def test_expire_time_tolerates_five_minutes_of_clock_difference():
    now = datetime(2026, 1, 31, 12, 0, 0, tzinfo=UTC)

    def check(value: str):
        return answers.expire_time({"expireTime": value}, "expireTime", answers.IAM, answers.IAM_FIX, now=now)

    assert check("2026-01-31T11:55:01Z") == now - timedelta(seconds=299)
    assert check("2026-02-01T00:05:00Z") == now + timedelta(hours=12, minutes=5)
    for outside in ("2026-01-31T11:55:00Z", "2026-02-01T00:05:01Z"):
        with pytest.raises(PipeError, match=re.escape(f"its expireTime {outside} is in the past")):
            check(outside)


def test_generate_id_token_refusals_name_the_method():
    message = iam_refusal(iam_body(accessToken=...), "generateIdToken")
    assert "its accessToken is missing" in message


# --- IAM Credentials generateIdToken -------------------------------------------------------------------------------------

@pytest.mark.parametrize("body, problem", [
    ({}, "its token is missing"),
    ({"token": None}, "its token is missing"),
    ({"token": [ID_TOKEN]}, "its token is a list, not a string"),
    ({"token": ""}, "its token is not a token (0 characters"),
    ({"token": "opaque-token-without-any-dots-0123456789"}, "its token is not a JWT"),
    ({"token": ID_TOKEN + ".extra"}, "its token is not a JWT"),
    ({"token": ID_TOKEN.replace(".", "", 1)}, "its token is not a JWT"),
    ({"token": ID_TOKEN + " "}, "its token is not a token"),
    ({"accessToken": ACCESS_TOKEN}, "its token is missing"),
])
def test_generate_id_token_fields(body, problem):
    message = refused(answers.id_token, body)
    assert message.startswith("IAM Credentials generateIdToken answered HTTP 200, but ")
    assert problem in message and names_field(message, "token"), message


# --- a registry's token service -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("body, field, problem", [
    ({}, "access_token", "its access_token is missing"),
    ({"expires_in": 300}, "access_token", "its access_token is missing"),
    ({"token": None, "access_token": "at-1"}, "token", "its token is missing"),  # `token` is read first, as present
    ({"token": ["tok"]}, "token", "its token is a list, not a string"),
    ({"token": 5}, "token", "its token is a number, not a string"),
    ({"access_token": {"token": "x"}}, "access_token", "its access_token is an object, not a string"),
    ({"token": "tok with spaces"}, "token", "its token is not a token"),
    ({"token": REGISTRY_TOKEN, "expires_in": 0}, "expires_in", "its expires_in is 0 s, outside 1 s to 12 h"),
    ({"token": REGISTRY_TOKEN, "expires_in": -300}, "expires_in", "its expires_in is -300 s"),
    ({"token": REGISTRY_TOKEN, "expires_in": 43201}, "expires_in", "its expires_in is 43201 s"),
    ({"token": REGISTRY_TOKEN, "expires_in": "forever"}, "expires_in", "its expires_in is a string, not a number of seconds"),
    ({"token": REGISTRY_TOKEN, "expires_in": 60.5}, "expires_in", "its expires_in is a number, not a number of seconds"),
    ({"token": REGISTRY_TOKEN, "expires_in": False}, "expires_in", "its expires_in is false"),
])
def test_registry_token_fields(body, field, problem):
    message = registry_refusal(body)
    assert problem in message and names_field(message, field), message


def test_registry_expiry_is_optional():
    token = "registry-token-" + "t" * answers.MIN_TOKEN
    assert answers.registry_token(encoded({"token": token, "expires_in": None}), REGISTRY_SERVICE, REGISTRY_FIX) == token
    assert answers.registry_token(encoded({"token": token, "expires_in": 60}), REGISTRY_SERVICE, REGISTRY_FIX) == token


# --- properties -------------------------------------------------------------------------------------------------------------

FIELDS = ["access_token", "token_type", "issued_token_type", "expires_in", "accessToken", "expireTime", "token"]
CHECKS = [
    (answers.check_sts, (), "Google STS"),
    (answers.check_access_token, (), "IAM Credentials generateAccessToken"),
    (answers.check_access_token, ("generateIdToken",), "IAM Credentials generateIdToken"),
    (lambda data: answers.id_token(data), (), "IAM Credentials generateIdToken"),
    (answers.registry_token, (REGISTRY_SERVICE, REGISTRY_FIX), REGISTRY_SERVICE),
]
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40),
              st.sampled_from([ACCESS_TOKEN, ID_TOKEN, "2026-01-31T12:00:00Z", "3599", "", " "])),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)),
    max_leaves=8,
)


def check_contract(data: bytes, expect_service: str, check, args) -> None:
    try:
        check(data, *args)
    except PipeError as error:
        message = error.message
        assert message.isprintable() and len(message) < MAX_LINE, message
        assert message.startswith(f"{expect_service} answered HTTP 200, but ")
        named = re.search(r"\(([A-Za-z_ ]+)\), which it never does: ", message)
        assert named and named[1] in [*FIELDS, "the body"], message


@LIMITS
@given(st.one_of(ADVERSARIAL_BYTES, st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=4).map(encoded)))
@example(BIG_TEXTS[1].encode())
@example(json.dumps({"access_token": ACCESS_TOKEN, "expires_in": 3599, "x": "a" * 60_000}).encode())
def test_any_body_is_accepted_or_refused_in_one_line_naming_the_service_and_the_field(data):
    for check, args, service in CHECKS:
        check_contract(data, service, check, args)


SECRET = st.one_of(
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=20, max_size=200).map("ya29.".__add__),
    st.sampled_from([ACCESS_TOKEN, ID_TOKEN, REGISTRY_TOKEN]),
)
WRAPPINGS = [lambda s: [s], lambda s: {"value": s}, lambda s: s + " ", lambda s: " " + s, lambda s: s + "\n", lambda s: s + "é",
             lambda s: "Bearer " + s, lambda s: s * 300]


@LIMITS
@given(SECRET, st.sampled_from(FIELDS), st.sampled_from(WRAPPINGS), st.sampled_from(FIELDS))
def test_a_refusal_never_quotes_a_token_whatever_field_holds_it(secret, field, wrap, other):
    body = {"access_token": ACCESS_TOKEN, "accessToken": ACCESS_TOKEN, "token": ID_TOKEN, "expires_in": 3599,
            "expireTime": expire_in(3600), field: wrap(secret)}
    if other != field:
        body.pop(other, None)  # and one other field missing
    for check, args, _ in CHECKS:
        try:
            check(encoded(body), *args)
        except PipeError as error:
            assert secret not in error.message and secret[:16] not in error.message and secret[-16:] not in error.message


@pytest.mark.parametrize("page", [b"<!DOCTYPE html><html><title>Error 404 (Not Found)!!1</title></html>",
                                  b"<!DOCTYPE html><html><title>Sign in to the network</title></html>",
                                  b"\n  <html><body>Please log in to continue</body></html>",
                                  b"<!-- portal --><HTML><HEAD><TITLE>Guest WiFi</TITLE></HEAD></HTML>"])
def test_a_web_page_with_200_is_something_in_between_on_every_service(page):
    for read in (answers.check_sts, answers.check_access_token, answers.id_token,
                 lambda data: answers.registry_token(data, "The token service us-docker.pkg.dev", "check REGISTRIES")):
        with pytest.raises(PipeError, match="answered HTTP 200 with a web page, not its answer: .*HTTPS_PROXY") as refused:
            read(page)
        assert "REGISTRIES" not in refused.value.message
