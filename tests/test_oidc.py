"""pipe.oidc: the step's OIDC token, decoded locally (never verified, never printed): its claims, expiry, audience
shapes, control characters, lifetime, and claim() for messages."""

import base64
import json
import math
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipe import oidc, shown
from pipe.errors import PipeError
from tests.support.budgets import EXAMPLE_DEADLINE_MS
from tests.support.inputs import ADVERSARIAL, PIECES, big

LIMITS = settings(max_examples=200, deadline=EXAMPLE_DEADLINE_MS)
NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
ISSUER = "https://api.bitbucket.org/2.0/workspaces/acme/pipelines-config/identity/oidc"
DEFAULT_AUD = "ari:cloud:bitbucket::workspace/0f3a9c1e-5b7d-2f4a-6c8e-0b1d3f5a7c9e"
# The claims of a Bitbucket step token (bitbucket-pipes.md §7): sub is {repositoryUuid}:{stepUuid}.
CLAIMS = {
    "iss": ISSUER, "aud": DEFAULT_AUD, "iat": NOW - 60, "exp": NOW + 3540, "sub": "{d4a1}:{e5b2}",
    "workspaceUuid": "{0f3a9c1e-5b7d-2f4a-6c8e-0b1d3f5a7c9e}", "repositoryUuid": "{d4a1}", "stepUuid": "{e5b2}",
    "pipelineUuid": "{c3}", "branchName": "main", "deploymentEnvironmentUuid": "{f6}",
}
NOT_A_JWT = "is not a JWT (value hidden): pass Bitbucket's $BITBUCKET_STEP_OIDC_TOKEN unchanged."


def b64(data: str | bytes) -> str:
    return base64.urlsafe_b64encode(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data).rstrip(b"=").decode()


def jwt(claims, header: str = '{"alg":"RS256","typ":"JWT","kid":"bb"}', signature: str = "c2lnbmF0dXJl") -> str:
    payload = claims if isinstance(claims, (str, bytes)) else json.dumps(claims)
    return f"{b64(header)}.{b64(payload)}.{signature}"


def read(claims, now: float = NOW, name: str = "BITBUCKET_STEP_OIDC_TOKEN") -> oidc.StepToken:
    return oidc.read({name: jwt(claims)}, now=now)


def refusal(claims, now: float = NOW, name: str = "BITBUCKET_STEP_OIDC_TOKEN") -> str:
    token = jwt(claims)
    with pytest.raises(PipeError) as caught:
        oidc.read({name: token}, now=now)
    message = caught.value.message
    assert message.isprintable() and token not in message and token.split(".")[1][:16] not in message
    return message


# --- decode_claims ------------------------------------------------------------------------------------------------------

def test_a_bitbucket_token_decodes_to_its_claims():
    assert oidc.decode_claims(jwt(CLAIMS)) == CLAIMS


@pytest.mark.parametrize("token", [
    jwt({"a": 1}, signature=""),  # the signature may be empty
    f"{b64('{}')}==.{b64(json.dumps({'a': 1}))}==.c2ln==",  # padded segments
    jwt({"a": 1}).replace(".", "=.", 1),
])
def test_compact_jws_variants_decode(token):
    assert oidc.decode_claims(token) == {"a": 1}


@pytest.mark.parametrize("token", [
    "", "a", "a.b", "a.b.c.d", ".b.c", "a..c", "eyJ.eyJ.", "a.e30", "a.e30.c.", "a.e30.c ", " a.e30.c", "a.e30.c\n", "a.e3 0.c",
    b64("{}") + "." + base64.b64encode(b'{"a": "~~~"}').decode() + ".c",  # standard base64 ('+'), not base64url
    jwt("[1, 2]"), jwt('"text"'), jwt("null"), jwt("not json"), jwt(b'{"a": "\xff"}'), jwt('{"a": 1'),
    jwt('{"a":' * 17 + "1" + "}" * 17), jwt('{"n": ' + "9" * 4301 + "}"), jwt("{}".encode("utf-16")),
    "a." + "A" * 5 + ".c",  # a payload length base64 cannot have
    "a.e30.c\u200b", "a.ｅ30.c", "Bearer " + jwt({"a": 1}),
])
def test_anything_else_is_not_a_jwt_and_nothing_of_it_is_shown(token):
    with pytest.raises(PipeError) as caught:
        oidc.decode_claims(token, "OIDC_TOKEN")
    assert caught.value.message == "OIDC_TOKEN " + NOT_A_JWT


def test_a_token_longer_than_any_from_bitbucket_is_refused_by_its_length_only():
    token = jwt({"pad": "x" * 70_000})
    with pytest.raises(PipeError) as caught:
        oidc.decode_claims(token)
    assert caught.value.message == (f"BITBUCKET_STEP_OIDC_TOKEN is {len(token)} characters long, far more than a JWT from Bitbucket "
                                    "ever is (value hidden): pass Bitbucket's $BITBUCKET_STEP_OIDC_TOKEN unchanged.")


# --- read(): where the token comes from ------------------------------------------------------------------------------------

def test_oidc_token_wins_over_the_steps_token_unless_blank():
    mine, steps = jwt(dict(CLAIMS, sub="mine")), jwt(dict(CLAIMS, sub="step"))
    assert oidc.read({"OIDC_TOKEN": mine, "BITBUCKET_STEP_OIDC_TOKEN": steps}, now=NOW).claims["sub"] == "mine"
    assert oidc.read({"OIDC_TOKEN": " \n", "BITBUCKET_STEP_OIDC_TOKEN": steps}, now=NOW).claims["sub"] == "step"
    assert oidc.read({"BITBUCKET_STEP_OIDC_TOKEN": f"  {steps}\n"}, now=NOW).value == steps  # stripped


@pytest.mark.parametrize("env", [{}, {"BITBUCKET_STEP_OIDC_TOKEN": ""}, {"BITBUCKET_STEP_OIDC_TOKEN": "  \n"},
                                 {"OIDC_TOKEN": "", "BITBUCKET_STEP_OIDC_TOKEN": None}])
def test_no_token_says_to_add_oidc_true(env):
    with pytest.raises(PipeError) as caught:
        oidc.read(env, now=NOW)
    assert caught.value.message == oidc.MISSING and "`oidc: true`" in oidc.MISSING


def test_refusals_name_the_variable_the_token_came_from():
    assert refusal({"exp": "soon"}, name="OIDC_TOKEN").startswith("OIDC_TOKEN has an exp claim")
    with pytest.raises(PipeError, match="^OIDC_TOKEN is not a JWT"):
        oidc.read({"OIDC_TOKEN": "garbage", "BITBUCKET_STEP_OIDC_TOKEN": jwt(CLAIMS)}, now=NOW)


# --- read(): expiry ------------------------------------------------------------------------------------------------------

def test_an_expired_token_says_how_long_ago():
    message = refusal(dict(CLAIMS, exp=NOW - 600))
    assert message.startswith("The step's OIDC token (BITBUCKET_STEP_OIDC_TOKEN) expired 600 s ago: ")
    assert "run this pipe earlier in the step" in message


@pytest.mark.parametrize("exp", [NOW, NOW + 1, NOW + 10**9, 1e308, NOW + 0.5])
def test_a_token_not_yet_expired_is_read(exp):
    assert read(dict(CLAIMS, exp=exp)).claims["exp"] == exp


def test_a_token_without_exp_is_left_to_google():
    assert "exp" not in read({k: v for k, v in CLAIMS.items() if k != "exp"}).claims


@pytest.mark.parametrize("payload, problem", [
    ('{"exp": "1767229200"}', "has an exp claim that is not a time in seconds"),
    ('{"exp": true}', "has an exp claim that is not a time in seconds"),
    ('{"exp": [1767229200]}', "has an exp claim that is not a time in seconds"),
    ('{"exp": {"seconds": 1}}', "has an exp claim that is not a time in seconds"),
    ('{"exp": NaN}', "has an exp claim that is not a time in seconds"),
    ('{"exp": Infinity}', "has an exp claim that is not a time in seconds"),
    ('{"exp": 1e400}', "has an exp claim that is not a time in seconds"),
    ('{"exp": ' + "9" * 400 + "}", "has an exp claim that is not a time in seconds"),  # beyond a float
    ('{"exp": -Infinity}', "expired long ago"),
    ('{"exp": -' + "9" * 400 + "}", "expired long ago"),
    ('{"exp": -1e400}', "expired long ago"),
    ('{"exp": 0}', f"expired {NOW} s ago"),
])
def test_an_exp_that_is_no_time_is_refused(payload, problem):
    assert problem in refusal(payload)


# --- read(): audiences and control characters -------------------------------------------------------------------------------

@pytest.mark.parametrize("aud, audiences", [
    (DEFAULT_AUD, [DEFAULT_AUD]),
    (["https://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q"],  # custom audiences: always a list
     ["https://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q"]),
    (["a", "b", "c"], ["a", "b", "c"]), ([], []), ("", []), (["", "a"], ["a"]), (..., []),
    ("x" * 300, ["x" * shown.CLAIM_LIMIT + "…"]),
])
def test_audiences(aud, audiences):
    claims = {k: v for k, v in dict(CLAIMS, aud=aud).items() if v is not ...}
    assert read(claims).audiences == audiences


@pytest.mark.parametrize("aud", [5, 1.5, True, {"aud": "x"}, ["a", 5], ["a", None], [["a"]], [{"a": 1}], [True]])
def test_an_aud_that_is_neither_a_string_nor_a_list_of_strings_is_refused(aud):
    assert "has an aud claim that is neither a string nor a list of strings" in refusal(dict(CLAIMS, aud=aud))


def test_a_null_aud_is_no_aud():
    assert read(dict(CLAIMS, aud=None)).audiences == []


@pytest.mark.parametrize("claims", [
    dict(CLAIMS, branchName="main\n\x1b[32m✔ forged"), dict(CLAIMS, sub="a\u202eb"), dict(CLAIMS, iss=ISSUER + "\r"),
    dict(CLAIMS, aud=["ok", "bad\x00"]), dict(CLAIMS, aud="x\u2066y"), dict(CLAIMS, workspaceUuid="\u200b{0f3a}"),
    dict(CLAIMS, anything="\x85"),
])
def test_a_claim_with_control_or_invisible_characters_is_refused(claims):
    assert "has a claim with control or invisible characters, which Bitbucket never writes" in refusal(claims)


def test_printable_unicode_claims_are_read():
    assert read(dict(CLAIMS, branchName="feature/über-日本-😀")).claim("branchName") == "feature/über-日本-😀"


# --- the StepToken --------------------------------------------------------------------------------------------------------

def test_claim_shows_any_claim_on_one_bounded_line():
    step = read(dict(CLAIMS, nested={"a": "b\nc"}, number=10**4000, items=[1], flag=False, nothing=None, long="y" * 1000))
    assert step.claim("iss") == ISSUER and step.claim("repositoryUuid") == "{d4a1}"
    assert (step.claim("nested"), step.claim("items"), step.claim("flag"), step.claim("nothing")) == (
        "(a JSON object)", "(a JSON list)", "false", "null")
    assert step.claim("missing") == "(not in the token)"
    assert step.claim("number") == "1" + "0" * (shown.CLAIM_LIMIT - 1) + "…"
    assert step.claim("long") == "y" * shown.CLAIM_LIMIT + "…"


@pytest.mark.parametrize("claims, lifetime", [
    (CLAIMS, "3600s"), (dict(CLAIMS, iat=NOW, exp=NOW + 30), "30s"), ({"exp": NOW + 10}, "unknown"),
    (dict(CLAIMS, iat="yesterday"), "unknown"), (dict(CLAIMS, exp=NOW + 0.5), "unknown"),
])
def test_lifetime_is_exp_minus_iat(claims, lifetime):
    assert read(claims).lifetime == lifetime


def test_lifetime_never_raises_for_an_accepted_token():
    step = read(f'{{"exp": {NOW + 100}, "iat": -{"9" * 4300}}}')
    assert isinstance(step.lifetime, str)


def test_lifetime_is_bounded():
    assert len(read(f'{{"exp": {NOW + 100}, "iat": -{"9" * 4000}}}').lifetime) <= shown.CLAIM_LIMIT + 2


def test_the_token_is_never_in_the_repr():
    token = jwt(CLAIMS)
    step = oidc.read({"BITBUCKET_STEP_OIDC_TOKEN": token}, now=NOW)
    assert step.value == token and token not in repr(step) and token.split(".")[1] not in repr(step)


# --- properties -------------------------------------------------------------------------------------------------------------

JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30), ADVERSARIAL,
              st.integers(-(10**4299), 10**4299)),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=12,
)
CLAIM_NAMES = st.sampled_from(["aud", "exp", "iat", "iss", "sub", "branchName", "repositoryUuid", "workspaceUuid"])
PAYLOADS = st.one_of(
    st.dictionaries(CLAIM_NAMES, JSON, max_size=6).map(json.dumps),
    JSON.map(json.dumps),
    st.builds(lambda claims, extra: json.dumps(dict(CLAIMS, **claims)) + extra, st.dictionaries(CLAIM_NAMES, JSON, max_size=2),
              st.sampled_from(["", " ", "}", ",", "\x00"])),
    ADVERSARIAL,
)


@LIMITS
@given(PAYLOADS, st.floats(0, 2 * NOW))
@example('{"aud": ["x", 5]}', NOW)
@example(f'{{"exp": {NOW}, "iat": 0}}', NOW)
@example(json.dumps({"sub": big("\u202e", 10_000)}), NOW)
@example(json.dumps({"aud": ["a"] * 8000}), NOW)
def test_any_payload_is_read_or_refused_in_one_line_and_never_shown(payload, now):
    token = jwt(payload)
    try:
        step = oidc.read({"BITBUCKET_STEP_OIDC_TOKEN": token}, now=now)
    except PipeError as error:
        message = error.message
        segment = token.split(".")[1]
        assert message.isprintable() and len(message) < 400 and (len(segment) < 12 or segment[:12] not in message)
        assert message == oidc.MISSING or message.startswith(("BITBUCKET_STEP_OIDC_TOKEN ", "The step's OIDC token (BITBUCKET_STEP_OIDC_TOKEN)"))
        return
    exp = step.claims.get("exp")
    assert exp is None or (isinstance(exp, (int, float)) and not isinstance(exp, bool) and math.isfinite(exp) and exp >= now)
    assert all(isinstance(a, str) and a.isprintable() and len(a) <= shown.CLAIM_LIMIT + 1 for a in step.audiences)
    for name in ("aud", "exp", "iat", "iss", "sub", "branchName", "missing"):
        text = step.claim(name)
        assert text.isprintable() and len(text) <= 10 * shown.CLAIM_LIMIT + 1


TOKEN_TEXT = st.one_of(
    ADVERSARIAL,
    st.lists(st.sampled_from(["eyJ", "e30", ".", "=", "-", "_", "+", "/", "A", "a", "0", " ", "\n"] + PIECES), max_size=30).map("".join),
    PAYLOADS.map(jwt),
)


@LIMITS
@given(TOKEN_TEXT)
@example(big("a=", 60_000))
@example(big("a.", 60_000))
@example("eyJ" + big("A", 60_000) + "." + big("=", 3000))
@example(big("eyJ.", 300_000))
@example(big(".", 60_000))
def test_any_token_text_is_decoded_or_refused_in_a_fixed_sentence(text):
    try:
        claims = oidc.decode_claims(text, "OIDC_TOKEN")
    except PipeError as error:
        assert error.message == "OIDC_TOKEN " + NOT_A_JWT or re.fullmatch(
            r"OIDC_TOKEN is \d+ characters long, far more than a JWT from Bitbucket ever is \(value hidden\): pass Bitbucket's "
            r"\$BITBUCKET_STEP_OIDC_TOKEN unchanged\.", error.message), error.message
        return
    assert isinstance(claims, dict) and len(text) <= oidc.MAX_TOKEN
