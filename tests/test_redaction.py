"""The one redaction layer: every log line (ours and the libraries', DEBUG included) and every error."""

import io
import logging

import pytest

from pipe import redact
from pipe.main import main
from tests.emulator import typical_world
from tests.emulator.tokens import new_access_token

# Real shapes: an RS256 step token from the emulator's issuer, header/payload/signature with '-' and
# '_', an unsigned JWT, and access tokens as Google issues them (dots and dashes inside).
WORLD = typical_world()
STEP_TOKEN = WORLD.issuer().mint(WORLD.labels["repository_uuid"])
TOKENS = [
    STEP_TOKEN,
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImEtYl9jIn0.eyJzdWIiOiJ7YS1iX2N9Ojp4In0.Qm-9_xY-zz_Q1w-Aa_Bb",
    "eyJhbGciOiJub25lIn0.eyJleHAiOjF9.",
    "ya29.a0AfB_byC-1xYz_9Rk3lQ-abcDEF123",
    "ya29.c.c0ASRK0GaX-yZ_1.2-3Ab_cD",
    new_access_token("ya29.c."),
    new_access_token("ya29.d."),
]
ORDINARY = [
    "https://sts.googleapis.com/v1/token",
    "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/puller@my-proj.iam.gserviceaccount.com:generateAccessToken",
    "us-docker.pkg.dev/my-project/tools/builder@sha256:4f1c2a9e0b7d3c5e6f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e",
    "{b3f1e2c4-5a6b-4c7d-8e9f-0a1b2c3d4e5f} and 0b9d7c58-1a2b-4c3d-9e8f-7a6b5c4d3e2f",
    "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/bb-pool/providers/bb-provider",
    "principalSet://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/attribute.repository_uuid/{x}",
    "eyes.on.the.road, keys.json, ya29 without a dot, base64 aGVsbG8gd29ybGQ=",
]


@pytest.mark.parametrize("token", TOKENS)
def test_token_shapes_are_redacted(token):
    text = f"Authorization: Bearer {token}; subject_token={token}."
    assert redact.redact(text) == f"Authorization: Bearer {redact.REDACTED}; subject_token={redact.REDACTED}."


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_is_left_alone(text):
    assert redact.redact(text) == text


def test_known_secrets_are_redacted_whatever_their_shape():
    redact.add_secret("opaque-secret-0123")
    redact.add_secret("short")  # too short to tell from ordinary words: ignored
    assert redact.redact("x opaque-secret-0123 y short") == f"x {redact.REDACTED} y short"


@pytest.fixture
def output(monkeypatch):
    """A root handler as the toolkit installs one, with the filter from redact.install(); root at DEBUG."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root, level = logging.getLogger(), logging.getLogger().level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)  # setLevel, not an attribute: it clears the loggers' isEnabledFor caches
    monkeypatch.setattr(logging.getLogger("google"), "propagate", True)  # google-auth turns it off when unconfigured
    redact.install()
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def test_records_with_arguments_are_redacted(output):
    logging.getLogger("pipe").info("exchanging %s for %s at %s", STEP_TOKEN, TOKENS[3], ORDINARY[0])
    text = output.getvalue()
    assert STEP_TOKEN not in text and TOKENS[3] not in text
    assert f"exchanging {redact.REDACTED} for {redact.REDACTED} at {ORDINARY[0]}" in text


def test_exception_text_is_redacted(output):
    try:
        raise ValueError(f"refused {STEP_TOKEN}")
    except ValueError:
        logging.getLogger("pipe").exception("exchange failed with %s", TOKENS[4])
    text = output.getvalue()
    assert "Traceback" in text and "ValueError: refused [redacted]" in text
    assert STEP_TOKEN not in text and TOKENS[4] not in text


@pytest.mark.parametrize("library", ["urllib3.connectionpool", "google.auth.transport.requests", "docker.api.client"])
def test_child_library_loggers_at_debug_are_redacted(output, library):
    token = TOKENS[5]
    logging.getLogger(library).debug('%s://%s:%s "%s /v1/x?access_token=%s HTTP/1.1" 200', "https", "h", 443, "POST", token)
    text = output.getvalue()
    assert f"DEBUG {library}:" in text and "access_token=[redacted]" in text and token not in text


def test_structured_extras_are_redacted(output):
    """google-auth's request log carries the body (subject token unhashed) and headers in `extra`."""
    captured = []
    probe = logging.Handler()
    probe.emit = captured.append
    logging.getLogger().addHandler(probe)
    redact.install()
    try:
        logging.getLogger("google.auth.transport.requests").debug(
            "Making request...",
            extra={"httpRequest": {"body": {"subject_token": STEP_TOKEN}, "headers": {"Authorization": f"Bearer {TOKENS[6]}"}}},
        )
    finally:
        logging.getLogger().removeHandler(probe)
    request = captured[0].httpRequest
    assert request == {"body": {"subject_token": redact.REDACTED}, "headers": {"Authorization": f"Bearer {redact.REDACTED}"}}


def test_a_library_record_with_bad_arguments_does_not_raise(output):
    logging.getLogger("urllib3").debug("%s and %s", TOKENS[3])  # one argument short
    assert "[redacted]" in output.getvalue() and TOKENS[3] not in output.getvalue()


def test_install_twice_adds_one_filter_per_handler(output):
    redact.install()
    redact.install()
    for handler in logging.getLogger().handlers:
        assert sum(isinstance(f, redact.RedactingFilter) for f in handler.filters) == 1


def test_error_lines_are_redacted(capsys):
    """A token pasted into a variable never reaches the ✖ line."""
    provider = "projects/123456789012/locations/global/workloadIdentityPools/bb-pool/providers/bb-provider"
    assert main({"WORKLOAD_IDENTITY_PROVIDER": provider, "IMAGE": STEP_TOKEN}) == 1
    out, err = capsys.readouterr()
    assert "✖ IMAGE is '[redacted]'" in out
    assert STEP_TOKEN not in out + err
