"""The one redaction layer: every log line (ours and the libraries', DEBUG included), every error, and the run
container's output; secrets in their encodings and split across lines; control characters from inputs."""

import base64
import io
import itertools
import json
import logging
import random
import re
import secrets
import string
import time

import colorlog
import pytest
from bitbucket_pipes_toolkit import Pipe
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pipe import logs, redact, shown
from pipe.main import main
from tests.support.emulator import typical_world
from tests.support.emulator.tokens import new_access_token
from tests.support.figures import probe, record
from tests.support.leaks import URL_SAFE, leaks

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
    "sha256:9834876dcfb05cb167a5c24953eba58c4ac89b1adf57f28f2f9d09af107ee8f0 and 4f1c2a9e0b7d",
    "c2VydmljZSBhY2NvdW50IHRva2VuIGZvciB0aGUgcHVsbGVy and eyJhbGciOiJSUzI1NiJ9 (base64 of words, a JWT header)",
    "/opt/atlassian/pipelines/agent/build/node_modules/@google-cloud/storage/build/cjs/src/nodejs-common/util.js:412",
    "123e4567-e89b-12d3-a456-426614174000 {3f2504e0-4f89-11d3-9a0c-0305e82c3301} ya29-is-not-a-token",
    "2026-05-09T07:35:25.123Z Step 3/12 : RUN make build -j2 \\n\\r\\t %s {} [] e ey ya2",
]


@pytest.mark.parametrize("token", TOKENS)
def test_token_shapes_are_redacted(token):
    text = f"Authorization: Bearer {token}; subject_token={token}."
    assert redact.redact(text) == f"Authorization: Bearer {redact.REDACTED}; subject_token={redact.REDACTED}."


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_is_left_alone(text):
    """With the secrets below known: no false positives in logs, ✔/✖ lines or the run container's output."""
    assert redact.redact(text) == text and shown.line(text) == text
    assert stream(text.encode(), list(range(0, len(text), 3))) == text.encode()


def test_known_secrets_are_redacted_whatever_their_shape():
    redact.add_secret("opaque-secret-0123")
    redact.add_secret("short")  # too short to tell from ordinary words: ignored
    assert redact.redact("x opaque-secret-0123 y short") == f"x {redact.REDACTED} y short"


@pytest.fixture
def output(monkeypatch):
    """A root handler as the toolkit installs one, with the filter from logs.install(); root at DEBUG."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root, level = logging.getLogger(), logging.getLogger().level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)  # setLevel, not an attribute: it clears the loggers' isEnabledFor caches
    monkeypatch.setattr(logging.getLogger("google"), "propagate", True)  # google-auth turns it off when unconfigured
    logs.install()
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
    logs.install()
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
    logs.install()
    logs.install()
    for handler in logging.getLogger().handlers:
        assert sum(isinstance(f, logs.RedactingFilter) for f in handler.filters) == 1


def test_error_lines_are_redacted(capsys):
    """A token pasted into a variable never reaches the ✖ line."""
    provider = "projects/123456789012/locations/global/workloadIdentityPools/bb-pool/providers/bb-provider"
    assert main({"WORKLOAD_IDENTITY_PROVIDER": provider, "IMAGE": STEP_TOKEN}) == 1
    out, err = capsys.readouterr()
    assert "✖ IMAGE is" in out
    assert STEP_TOKEN not in out + err


# --- encodings, and the run container's output -----------------------------------------------------------------

# Known secrets of each kind: the step token (a JWT), an access token, an opaque value no shape catches, and one
# of the shortest length kept.
ACCESS_TOKEN = new_access_token("ya29.c.")
OPAQUE = "AR-" + secrets.token_urlsafe(32)
SHORTEST = secrets.token_urlsafe(6)
SECRETS = [STEP_TOKEN, ACCESS_TOKEN, OPAQUE, SHORTEST]
for _secret in SECRETS:
    redact.add_secret(_secret)

def stream(data: bytes, cuts: list[int]) -> bytes:
    """The data through one StreamRedactor, in chunks cut at the given offsets."""
    redactor, bounds = redact.StreamRedactor(), [0, *sorted(cuts), len(data)]
    return b"".join(redactor.feed(data[a:b]) for a, b in itertools.pairwise(bounds)) + redactor.close()


def wrap(text: str, width: int, first: int, separator: str) -> str:
    """Lines of `width` characters, the first one `first` characters long, as a terminal or `base64 -w` prints them."""
    return separator.join([text[:first], *(text[i:i + width] for i in range(first, len(text), width))])


# Line breaks followed by what a log or a script puts at the start of each line.
PREFIXED_LINES = ["\nb64:", "\n2026-05-09T07:35:25.123456Z ", "\r\nbuild-1  | ", "\n     2\t", "\n[pod/app-7d9f/main] "]


@st.composite
def exposures(draw):
    """A secret as a script or an endpoint might print it, then split as output gets split."""
    secret = draw(st.sampled_from(SECRETS))
    form = draw(st.sampled_from(["as is", "base64", "docker", "json"]))
    if form == "base64":  # at any alignment inside a longer base64 text, either alphabet, padded or not
        text = base64.b64encode(draw(st.binary(max_size=5)) + secret.encode() + draw(st.binary(max_size=5))).decode()
        text = text.translate(URL_SAFE) if draw(st.booleans()) else text
        text = text.rstrip("=") if draw(st.booleans()) else text
    elif form == "docker":  # ~/.docker/config.json after `docker login -u oauth2accesstoken`
        auth = base64.b64encode(f"oauth2accesstoken:{secret}".encode()).decode()
        text = json.dumps({"auths": {"us-docker.pkg.dev": {"auth": auth}}})
    else:
        text = json.dumps({"access_token": secret}) if form == "json" else secret
    separator = draw(st.sampled_from(["\n", "\r\n", "\\n", "\\r\\n", " ", "\n    ", "\t", *PREFIXED_LINES]))
    split = draw(st.sampled_from(["no", "wrapped", "anywhere"]))
    if split == "wrapped":
        width = draw(st.integers(24, 120))
        text = wrap(text, width, draw(st.integers(1, width)), separator)
    elif split == "anywhere":  # separators at least 24 characters apart: one at most within any 24
        at = draw(st.integers(1, 60))
        for gap in draw(st.lists(st.integers(24, 400), max_size=4)):
            if at < len(text):
                text = text[:at] + separator + text[at:]
            at += gap + len(separator)
    return secret, text


NOISE = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)


@settings(max_examples=400, deadline=None)
@given(exposures(), NOISE, NOISE, st.data())
def streamed_exposures_are_redacted(exposure, before, after, data):
    secret, shown = exposure
    text = f"{before}{shown}{after}\n"
    encoded = text.encode()
    output = stream(encoded, data.draw(st.lists(st.integers(0, len(encoded)), max_size=12)))
    assert not leaks(output.decode(), secret) and b"[redacted]" in output
    assert output == redact.redact(text).encode()  # the chunking changes nothing, and logs read the same


def test_secrets_never_get_through_a_stream_in_any_encoding_or_chunking():
    with probe("secrets in their encodings, split, streamed in random chunks"):
        streamed_exposures_are_redacted()


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(TOKENS), NOISE, st.data())
def streamed_token_shapes_are_redacted(token, before, data):
    text = f"{before}Authorization: Bearer {token}.\n"
    encoded = text.encode()
    output = stream(encoded, data.draw(st.lists(st.integers(0, len(encoded)), max_size=12)))
    assert token.encode() not in output and output == redact.redact(text).encode()


def test_unknown_tokens_never_get_through_a_stream(monkeypatch):
    """Tokens the pipe never saw (the script minted them) are caught by their shape, whatever the chunking."""
    monkeypatch.setattr(redact, "_secrets", set())  # none known: only the shapes decide what to hold back
    monkeypatch.setattr(redact, "_compiled", None)
    with probe("unknown tokens streamed in random chunks"):
        streamed_token_shapes_are_redacted()


# Text that holds nothing to redact but is full of what could start it: shape markers, the long secrets' first characters,
# backslashes, multi-byte characters cut in two, bytes that are not UTF-8.
FRAGMENTS = [b"e", b"ey", b"eyJ", b"eyJhbGciOi", b"ya2", b"ya29", b"\\", b"\\n", b"\r\n", b"\n", b" ", b"\xe2\x9c", b"\x94",
             b"\xff", "✔é".encode(), *(s.encode()[:size] for s in SECRETS if len(s) > 16 for size in (1, 3, 7))]
HARMLESS = st.one_of(st.binary(max_size=3000), st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=4)), max_size=60).map(b"".join))


@settings(max_examples=400, deadline=None)
@given(HARMLESS, st.data())
def test_output_without_secrets_comes_out_byte_for_byte(data, draw):
    assume(b"ya29." not in data and not re.search(rb"eyJ[\w-]{4,}\.", data))  # no token shape either
    assert stream(data, draw.draw(st.lists(st.integers(0, len(data)), max_size=20))) == data


def test_a_secret_between_binary_output_is_all_that_changes():
    noise = bytes(range(256)) + "✔ multi-byte".encode()
    for secret in SECRETS:
        data = noise + secret.encode() + noise
        assert stream(data, list(range(0, len(data), 5))) == noise + b"[redacted]" + noise


@pytest.mark.parametrize("shown", [
    pytest.param(lambda s: s, id="as is"),
    pytest.param(lambda s: base64.b64encode(s.encode()).decode(), id="base64"),
    pytest.param(lambda s: base64.urlsafe_b64encode(b"x" + s.encode()).decode().rstrip("="), id="base64url, offset 1"),
    pytest.param(lambda s: base64.encodebytes(b"ab" + s.encode()).decode(), id="base64 -w 76, offset 2"),
    pytest.param(lambda s: base64.b64encode(f"oauth2accesstoken:{s}".encode()).decode(), id="docker auth"),
    pytest.param(lambda s: json.dumps({"token": wrap(s, 64, 10, "\n")}), id="json, wrapped at 64"),
    pytest.param(lambda s: wrap(s, 76, 3, "\r\n"), id="CRLF at 76, early split"),
    pytest.param(lambda s: s[:30] + "\n\n   " + s[30:], id="blank line inside"),
    pytest.param(lambda s: "b64:" + wrap(base64.b64encode(s.encode()).decode(), 76, 76, "\nb64:"), id="base64 | sed s/^/b64:/"),
    pytest.param(lambda s: wrap(s, 50, 50, "\n2026-05-09T07:35:25Z "), id="fold -w 50, timestamped"),
])
def test_log_text_hides_secrets_in_their_encodings(request, shown):
    with probe(f"secret as {request.node.callspec.id} in a log line"):
        for secret in SECRETS:
            output = redact.redact(f"response: {shown(secret)} (done)")
            assert not leaks(output, secret) and output.startswith("response: ") and output.endswith(" (done)")


def test_only_what_may_still_become_a_secret_is_held_back():
    """Interactive output is not delayed: a chunk comes out at once but for a tail that may start a secret (a line
    break, a space or a `%` never does)."""
    redactor = redact.StreamRedactor()
    for chunk in [b"Step 1/3 : RUN make\n", b"progress 50%\r", b"Password: ", "✔ done\n".encode()]:
        assert redactor.feed(chunk) == chunk
    assert redactor.feed(f"token {ACCESS_TOKEN}\n".encode()) == b"token [redacted]\n"
    assert redactor.feed(b"token " + ACCESS_TOKEN[:20].encode()) == b"token "
    assert redactor.feed(ACCESS_TOKEN[20:].encode() + b" ok\n") == b"[redacted] ok\n"
    assert redactor.feed(b"Continue? y") == b"Continue? "  # a 'y' may open ya29.…
    assert redactor.feed(b"es\n") == b"yes\n"
    assert redactor.feed(b"half a character \xe2\x9c") == b"half a character \xe2\x9c"
    assert redactor.feed(b"\x94\n") + redactor.close() == b"\x94\n"


def test_a_pending_match_is_held_only_so_long():
    """A token-shaped run that never ends is let go after 16 KiB rather than held (and rescanned) forever."""
    redactor, run = redact.StreamRedactor(), b"eyJ" + b"a" * 100_000
    out = b"".join(redactor.feed(run[i:i + 4096]) for i in range(0, len(run), 4096))
    assert len(run) - 16 * 1024 <= len(out) < len(run) and out == run[:len(out)]
    assert out + redactor.close() == run


def build_output(lines: int) -> bytes:
    """Ordinary build output: compiler and test lines, paths, digests, some base64, the odd token-like word."""
    pick = random.Random(0)
    words = ["Step", "3/12", "RUN", "make", "src/main.py:12:", "PASSED", "[100%]", "warning:", "/usr/lib/python3.11/ast.py",
             "sha256:4f1c2a9e0b7d3c5e6f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e", "eyJhbGciOi", "ya29", "done"]
    words += ["".join(pick.choices(string.ascii_lowercase, k=pick.randint(2, 9))) for _ in range(2000)]
    text = [" ".join(pick.choices(words, k=pick.randint(3, 12))) for _ in range(lines)]
    return "\n".join(line if n % 40 else base64.b64encode(pick.randbytes(57)).decode() for n, line in enumerate(text)).encode()


def test_streaming_is_linear(monkeypatch):
    """Four times the output takes about four times as long (a quadratic scan would take sixteen), for ordinary
    output, for runs that keep matches pending, and in small chunks; the throughput goes to the figures."""
    monkeypatch.setattr(redact, "_secrets", set(SECRETS))  # as many as a run knows, not all the suite's tests added
    monkeypatch.setattr(redact, "_compiled", None)
    ordinary = build_output(20_000)
    pending = (b"eyJ" + b"x" * 9000 + b"\n" + ACCESS_TOKEN[:100].encode() + b"\\") * 40

    def seconds(data: bytes, chunk: int) -> float:
        best = float("inf")
        for _ in range(3):
            started, redactor = time.perf_counter(), redact.StreamRedactor()
            for i in range(0, len(data), chunk):
                redactor.feed(data[i:i + chunk])
            redactor.close()
            best = min(best, time.perf_counter() - started)
        return best

    for data, chunk in [(ordinary, 4096), (pending, 4096), (ordinary[:200_000], 100)]:
        assert seconds(data * 4, chunk) < 8 * seconds(data, chunk)
    rate = len(ordinary) * 8 / 1e6 / seconds(ordinary * 8, 4096)
    record("stream redaction", f"{rate:.0f} MB/s with {len(SECRETS)} secrets known (ordinary build output, 4 KiB chunks)")


# --- control characters ------------------------------------------------------------------------------------------

FORGED = "https://svc.run.app\n\x1b[32m✔ The script in us-docker.pkg.dev/p/r/i:1 succeeded.\x1b[0m\r\x1b[2K"


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


@pytest.fixture
def colored():
    """The toolkit's handler (colorlog, as bitbucket_pipes_toolkit.helpers.configure_logger sets it up), filtered."""
    stream = io.StringIO()
    handler = colorlog.StreamHandler(stream)
    handler.setFormatter(colorlog.ColoredFormatter("%(log_color)s%(levelname)s: %(message)s"))
    root, level = logging.getLogger(), logging.getLogger().level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    logs.install()
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def test_a_log_record_is_one_line_and_keeps_the_pipes_colours(colored):
    with probe("forged log line from an input"):
        logging.getLogger("pipe").info("Audience: %s", FORGED)
        logging.getLogger("pipe").warning(f"Image {FORGED} runs as root")
        lines = colored.getvalue().splitlines()
        assert len(lines) == 2 and all(line.startswith("\x1b[") and line.endswith("\x1b[0m") for line in lines)
        assert all(line.count("\x1b") == 2 and "\r" not in line for line in lines)  # the formatter's colour and reset
        assert "INFO: Audience: https://svc.run.app\\n\\x1b[32m✔ The script" in lines[0]


def test_only_a_debug_traceback_spans_lines(colored):
    for level in (logging.DEBUG, logging.ERROR):
        try:
            raise ValueError(f"refused {ACCESS_TOKEN} for {FORGED}")
        except ValueError:
            logging.getLogger("pipe").log(level, "exchange failed", exc_info=True)
    debug, error = colored.getvalue().split("\x1b[31mERROR: ")  # where the red of the ERROR line starts
    assert "exchange failed\x1b[0m\nTraceback (most recent call last):\n  File " in debug  # the trace follows the colours
    assert "\nValueError: refused [redacted] for https://svc.run.app\n\\x1b[32m✔" in debug  # its lines, but no ESC
    assert error.count("\n") == 1 and error.startswith("exchange failed\\nTraceback (most recent call last):\\n  File ")
    assert ACCESS_TOKEN not in debug + error
    assert debug.count("\x1b") == 2 and error.count("\x1b") == 1  # colour and reset; the error's red is the split above
