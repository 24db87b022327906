"""pipe.shown: every value the pipe shows is one printable line, cut to a bound, and nothing that could be a key or a
token is shown at all."""

import base64
import json
import string

import pytest
from bitbucket_pipes_toolkit import Pipe
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipe import redact, shown
from tests.support.budgets import CRASH_HUNT, EXAMPLE_DEADLINE_MS
from tests.support.figures import probe
from tests.support.inputs import ADVERSARIAL, BIG_TEXTS, TEXT, with_examples
from tests.support.token_shapes import FORGED, STEP_TOKEN

LIMITS = settings(max_examples=200, deadline=EXAMPLE_DEADLINE_MS)
MAX_ESCAPE = 10  # the longest escape of one character: \U0010ffff

# Characters that must never reach the terminal as themselves: C0/C1 controls, DEL, line and paragraph separators,
# bidirectional embeddings, overrides, isolates and marks, zero-width format characters, lone surrogates.
NON_PRINTING = ["\x00", "\x07", "\x08", "\t", "\n", "\r", "\x1b", "\x7f", "\x85", "\x9b", "\xa0", "\u2028", "\u2029",
                "\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e", "\u200f",
                "\u061c", "\u200b", "\ufeff", "\ud800", "\udcff"]

JWT = ("eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2FwaS5iaXRidWNrZXQub3JnIiwiZXhwIjoxNzAwMDAwMDAwfQ."
       "c2lnbmF0dXJlLW9mLXRoZS10b2tlbg")
ACCESS_TOKEN = "ya29.a0AfH6SMBx3kYqZ9vL2mN8pQ4rT6uW1yE5iO7aS3dFgHjKlZxCvBnM"
KEY_BASE64 = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKB"
SECRETS = [
    JWT, ACCESS_TOKEN, "ya29.c.b0Aaekm1K", KEY_BASE64,
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n",
    '{"type": "service_account", "private_key": "x"}', '{"client_id": "1", "client_secret": "GOCSPX-abc"}',
    "https://deployer:s3cret@registry.example.com/v2/", "HTTP://user:pw@host", "ssh+git://git:tok@bitbucket.org/a/b",
    base64.b64encode(b'{"type": "service_account", "project_id": "my-project"}').decode(),
]
PLAIN = [
    "projects/123456789012/locations/global/workloadIdentityPools/bb-pool/providers/bb-provider",
    "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/bb-pool/providers/bb-provider",
    "deployer@my-project.iam.gserviceaccount.com", "us-docker.pkg.dev/my-project/tools/builder:1.4",
    "us-docker.pkg.dev/my-project/tools/builder@sha256:4f1c2a9e0b7d3c5e6f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e",
    "https://sts.googleapis.com/v1/token", "ari:cloud:bitbucket::workspace/0f3a9c1e-5b7d-2f4a-6c8e-0b1d3f5a7c9e",
    "{0f3a9c1e-5b7d-2f4a-6c8e-0b1d3f5a7c9e}", "https://www.googleapis.com/auth/cloud-platform", "3600s", "true", "",
    "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnop",  # long, but one case only: a word, not key material
    "/opt/atlassian/pipelines/agent/build/.bitbucket/pipelines/generated/pipeline/pipes",
]
MIXED_RUN = st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=32, max_size=120).filter(
    lambda s: any(c.islower() for c in s) and any(c.isupper() for c in s) and any(c.isdigit() for c in s))
TOKEN_SHAPED = st.one_of(
    MIXED_RUN,
    st.binary(min_size=16, max_size=200).map(lambda b: "ya29.a0" + base64.urlsafe_b64encode(b).decode().rstrip("=")),
    st.binary(min_size=8, max_size=200).map(
        lambda b: "eyJhbGciOiJSUzI1NiJ9." + base64.urlsafe_b64encode(b).decode().rstrip("=") + "AAAA.c2ln"),
)

shown.line("warm up " + JWT)  # compile the redaction patterns before any deadline applies


def one_printable_line(text: str) -> bool:
    return isinstance(text, str) and text.isprintable() and "\n" not in text and "\r" not in text


# --- escape and line -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("char", NON_PRINTING)
def test_escape_writes_every_non_printing_character_as_python_does(char):
    escaped = shown.escape(f"a{char}b")
    assert escaped == "a" + repr(char)[1:-1] + "b"
    assert one_printable_line(escaped) and char not in escaped


@pytest.mark.parametrize("text", ["plain", "café ünïcödé 日本語 😀", "a\\nb", "'quoted' \"double\"", " spaced  out ", "✔ ✖ …"])
def test_escape_keeps_printable_text_unchanged(text):
    assert shown.escape(text) == text


def test_a_forged_second_line_and_terminal_codes_stay_on_one_line():
    forged = "bb-pool\n\x1b[32m✔ Pulled us-docker.pkg.dev/x\x1b[0m\r\u202eevil"
    for text in (shown.escape(forged), shown.line(forged), shown.clipped(forged), shown.echo(forged), shown.claim(forged)):
        assert one_printable_line(text) and "\x1b" not in text and "\u202e" not in text


@pytest.mark.parametrize("secret", [JWT, ACCESS_TOKEN])
def test_line_redacts_token_shapes_it_was_never_told_about(secret):
    out = shown.line(f"Google said: Bearer {secret}\nnext")
    assert secret not in out and secret[:24] not in out
    assert out.startswith("Google said: Bearer [redacted]") and out.endswith("\\nnext")


def test_line_redacts_a_registered_secret_in_its_encodings(monkeypatch):
    monkeypatch.setattr(redact, "_secrets", set())
    monkeypatch.setattr(redact, "_compiled", None)
    secret = "s3cr3t-Passw0rd-for-the-registry"
    redact.add_secret(secret)
    encoded = base64.b64encode(f"oauth2accesstoken:{secret}".encode()).decode()
    for text in (f"password={secret}", f'{{"auth": "{encoded}"}}', f"cut: {secret[:20]}"):
        out = shown.line(text)
        assert secret[:16] not in out and "[redacted]" in out, out
    assert encoded[-20:] not in shown.line(f"auth {encoded}")  # the base64 of the secret, found in the docker auth field


# --- clipped ---------------------------------------------------------------------------------------------------------

def test_clipped_cuts_then_marks_the_cut():
    assert shown.clipped("a" * 80) == "a" * 80
    assert shown.clipped("a" * 81) == "a" * 80 + "…"
    assert shown.clipped("abcdef", 3) == "abc…"
    assert shown.clipped("ab\ncd", 2) == "ab…"  # what is cut away is not escaped into the line either
    assert shown.clipped("\n" * 5, 2) == "\\n\\n…"


# --- looks_secret, echo, path -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", SECRETS)
def test_key_and_token_material_looks_secret_and_is_hidden(value):
    assert shown.looks_secret(value)
    assert shown.echo(value) == "(hidden)"
    assert shown.path(value) == "(value hidden)"


@pytest.mark.parametrize("value", PLAIN)
def test_names_paths_urls_and_digests_do_not_look_secret(value):
    assert not shown.looks_secret(value)
    assert shown.echo(value).startswith(repr(value[:80])) or shown.echo(value) == repr(value)


def test_a_secret_anywhere_in_what_echo_could_show_hides_the_value():
    for at in (0, 40, 79):
        value = "x" * at + " " + ACCESS_TOKEN
        assert shown.echo(value) == "(hidden)"


def test_echo_quotes_and_cuts_long_values_with_their_length():
    assert shown.echo("my-project") == "'my-project'"
    assert shown.echo("a\tb") == "'a\\tb'"
    long = "projects/" + "1" * 200
    assert shown.echo(long) == repr(long[:80]) + f"… ({len(long)} characters)"


@pytest.mark.parametrize("value, exists, shown_as", [
    ("cred.json", False, "'cred.json'"), ("config/gcp.json", False, "'config/gcp.json'"), ("  cred.json\n", False, "'cred.json'"),
    ("credentials", False, "(value hidden)"), ("credentials", True, "'credentials'"),
    ('{"type": "external_account"}', False, "(value hidden)"), ("a" * 76 + ".json", False, "(value hidden)"),
    ("my cred.json", False, "(value hidden)"), ("cred.json\x1b[2J", False, "(value hidden)"), ("", True, "(value hidden)"),
    ("eyJ0eXBlIjoiZXh0ZXJuYWxfYWNjb3VudCJ9.json", True, "(value hidden)"),
])
def test_path_shows_only_what_plainly_is_a_path(value, exists, shown_as):
    assert shown.path(value, exists) == shown_as


# --- claim -------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, text", [
    ("https://api.bitbucket.org/2.0/workspaces/acme/pipelines-config/identity/oidc",
     "https://api.bitbucket.org/2.0/workspaces/acme/pipelines-config/identity/oidc"),
    (True, "true"), (False, "false"), (None, "null"), (0, "0"), (1700000000, "1700000000"), (1.5, "1.5"),
    (float("nan"), "nan"), (float("inf"), "inf"), ([1, 2], "(a JSON list)"), ({"a": 1}, "(a JSON object)"),
    ("{a}\n", "{a}\\n"),
])
def test_claim_writes_each_json_value(value, text):
    assert shown.claim(value) == text


def test_claim_cuts_long_strings_and_long_numbers():
    assert shown.claim("x" * 300) == "x" * shown.CLAIM_LIMIT + "…"
    digits = json.loads("9" * 4300)  # the longest integer JSON parsing gives
    assert shown.claim(digits) == "9" * shown.CLAIM_LIMIT + "…"
    assert shown.claim(-digits).startswith("-999")


# --- properties ----------------------------------------------------------------------------------------------------------

@LIMITS
@given(ADVERSARIAL, st.integers(0, 300))
@with_examples(*BIG_TEXTS, rest=(80,))
@example("\x1b" * 500, 80)
@example("\ud800" * 500, 80)
def test_every_form_is_one_printable_bounded_line(text, limit):
    assert one_printable_line(shown.escape(text))
    assert one_printable_line(shown.line(text))
    clipped = shown.clipped(text, limit)
    assert one_printable_line(clipped) and len(clipped) <= MAX_ESCAPE * limit + 1
    echoed = shown.echo(text)
    assert one_printable_line(echoed) and len(echoed) <= MAX_ESCAPE * shown.ECHO_LIMIT + 40
    for exists in (False, True):
        path = shown.path(text, exists)
        assert path == "(value hidden)" or (path == repr(text.strip()) and len(path) <= 82)
    claim = shown.claim(text)
    assert one_printable_line(claim) and len(claim) <= MAX_ESCAPE * shown.CLAIM_LIMIT + 1


@LIMITS
@given(ADVERSARIAL)
@example("a\x00b\x1bc\u202ed")
def test_escape_is_idempotent_and_loses_nothing_printable(text):
    once = shown.escape(text)
    assert shown.escape(once) == once and len(once) <= MAX_ESCAPE * len(text)
    rest = iter(once)  # the printable characters stay, in order
    assert all(any(c == o for o in rest) for c in text if c.isprintable())


@LIMITS
@given(st.text(max_size=100), TOKEN_SHAPED, st.text(max_size=100))
@example("IMAGE=", ACCESS_TOKEN, "")
@example("x" * 79 + " ", KEY_BASE64, "")
def test_echo_and_path_never_show_key_or_token_material(before, secret, after):
    value = before + secret + after
    for out in (shown.echo(value), shown.path(value), shown.path(value, exists=True)):
        assert secret[:16] not in out and secret[-16:] not in out


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.integers(10**300, 10**4299)),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)),
    max_leaves=10,
)


@LIMITS
@given(JSON_VALUES)
@example(-(10**4300 - 1))
def test_claim_of_any_json_value_is_one_bounded_printable_line(value):
    text = shown.claim(value)
    assert one_printable_line(text) and len(text) <= MAX_ESCAPE * shown.CLAIM_LIMIT + 1


# --- echoing any text ------------------------------------------------------------------------

@CRASH_HUNT
@given(st.one_of(TEXT, st.text(min_size=81, max_size=400)))
def test_an_echoed_value_is_one_short_printable_piece(value):
    echoed = shown.echo(value)
    assert echoed.isprintable() and len(echoed) < 900
    assert echoed == "(hidden)" or repr(value[: shown.ECHO_LIMIT]) in echoed


# --- control characters ------------------------------------------------------------------------------------------



def test_printable_escapes_every_control_character():
    text = "a\nb\r\tc\x00\x1b[31md\x7f\x85\x9b\u2028\u2029\u202ee\u2066f\udcff"
    assert shown.line(text) == "a\\nb\\r\\tc\\x00\\x1b[31md\\x7f\\x85\\x9b\\u2028\\u2029\\u202ee\\u2066f\\udcff"
    assert shown.line(f"{STEP_TOKEN}\n") == "[redacted]\\n"


def test_an_input_cannot_forge_a_success_line(capsys):
    """ID_TOKEN_AUDIENCE with a line break and colours, printed in the ✔ line the way main prints it."""
    with probe("forged ✔ line from an input"):
        Pipe.success(shown.line(f"Minted an ID token for audience {FORGED}."))
        out = capsys.readouterr().out
        assert out.count("\n") == 1 and out.count("\x1b") == 2 and "\r" not in out  # the toolkit's green and reset only
        assert out.startswith("\x1b[32m✔ Minted an ID token for audience https://svc.run.app\\n\\x1b[32m✔ The script")
