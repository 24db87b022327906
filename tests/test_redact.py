"""The one redaction layer: token shapes and known secrets in any text, in their encodings and split across lines,
and in the run container's output streamed through it (the log and the printed lines: tests/test_logs.py, test_shown.py);
and attacks on it: secrets made to slow it down or to censor ordinary output, and output that hides a secret between
terminal control sequences or in UTF-16."""

import base64
import itertools
import json
import random
import re
import secrets
import string
import time

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pipe import redact, shown
from tests.support.emulator.tokens import new_access_token
from tests.support.figures import probe, record
from tests.support.leaks import URL_SAFE, leaks
from tests.support.token_shapes import ORDINARY, STEP_TOKEN, TOKENS


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
# Terminal control sequences a script prints between pieces of a token (each line coloured, a hyperlink, a title), in
# their ESC and C1 forms: a terminal shows none of them, so the pieces read as one token.
CONTROLS = ["\x1b[2m", "\x1b[0m", "\x1b[38;5;240m", "\x1b[2K\r", "\x1b(B\x1b[m", "\x1b]8;;https://example.com/a\x1b\\",
            "\x1b]0;build 7\x07", "\u009b1m", "\u009d8;;https://example.com\u009c", "\x1bP+q544e\x1b\\"]
COLOURED_LINES = ["\n\x1b[2m", "\x1b[0m\n\x1b[2m", "\x1b[31m", "\r\n\x1b]8;;https://example.com/a\x1b\\",
                  "\n\x1b[90m2026-05-09T07:35:25Z\x1b[0m ", "\n\u009b2m", "\x1b[0m\x1b(B\n\x1b[33mwarning: \x1b[0m"]


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
    separator = draw(st.sampled_from(["\n", "\r\n", "\\n", "\\r\\n", " ", "\n    ", "\t", *PREFIXED_LINES, *COLOURED_LINES]))
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
             b"\xff", "✔é".encode(), b"\x1b", b"\x1b[", b"\x1b[2", b"m", b"\x1b]8;;", b"\x07", b"\x1b\\", b"\xc2", b"\xc2\x9b", b"\x00",
             *(s.encode()[:size] for s in SECRETS if len(s) > 16 for size in (1, 3, 7)),
             *(s[:size].encode(codec) for s in SECRETS if len(s) > 16 for size in (1, 7) for codec in ("utf-16-le", "utf-16-be"))]
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


# --- attacks on the mechanism: secrets made to slow it down or to censor, secrets hidden by how they are printed -----

class Counted:
    """Bytes the matcher compares, counting every byte it takes out of them: the work its comparisons do."""

    def __init__(self, data: bytes, tally: dict):
        self.data, self.tally = data, tally

    def __getitem__(self, key):
        piece = self.data[key]
        self.tally["compared"] += len(piece)
        return piece


def work(secrets_: list[str], text: bytes) -> dict[str, float]:
    """The work of streaming the text in 4 KiB chunks with these secrets known, taken as they are (add_secret would
    refuse the plainest): bytes compared, places tried and walks taken, each per byte of text."""
    tally = {"compared": 0, "tried": 0, "walks": 0}
    prefix, suffix, walk, extend = redact._common_prefix, redact._common_suffix, redact._walk, redact._Matcher._extend

    def counted(name, function):
        def call(*args):
            tally[name] += 1
            return function(*args)
        return call

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(redact, "_secrets", set(secrets_))
        patch.setattr(redact, "_compiled", None)
        redact._matcher()
        patch.setattr(redact, "_common_prefix", lambda text, at, form, done, size: prefix(
            Counted(text, tally), at, Counted(form, tally), done, size))
        patch.setattr(redact, "_common_suffix", lambda text, at, form, done: suffix(Counted(text, tally), at, Counted(form, tally), done))
        patch.setattr(redact, "_walk", counted("walks", walk))
        patch.setattr(redact._Matcher, "_extend", counted("tried", extend))
        stream(text, list(range(4096, len(text), 4096)))
    return {name: count / len(text) for name, count in tally.items()}


def adversarial(scale: int) -> tuple[list[str], list[bytes]]:
    """Secrets a hostile token service could return, 1/scale of their full length, and output lines that match them
    over and over: periodic ones, one a long run then a token, one of three letters (every gram recurs hundreds of
    times), and 200 sharing a long stretch (as JWTs of one issuer share their claims)."""
    pick = random.Random(7)

    def letters(count: int, alphabet: str = string.ascii_letters + string.digits + "-_") -> str:
        return "".join(pick.choices(alphabet, k=count))

    shared = letters(2000 // scale)
    secrets_ = ["=" * (16000 // scale), "abc" * (5000 // scale), "PT09" * (4000 // scale), "=" * (12000 // scale) + letters(40),
                letters(6000 // scale, "ab1"), *(shared + letters(24) for _ in range(200))]
    lines = [b"step 1/9 " + b"=" * 72, b"abc" * 30, b"PT09" * 20 + b" done", letters(90, "ab1").encode(), b"=" * 100 + b"X",
             letters(300, "ab1").encode() + b"x", (shared[:500] + letters(20)).encode(), b"abcabcabcabcabcabcabX" * 5]
    return secrets_, lines


def test_adversarial_secrets_keep_redaction_linear():
    """A secret can make every gram of the output match somewhere, thousands of times over (a hostile registry token
    "=" * 16000 once took 38 s for 16 KB of `====` lines): the work stays in proportion to the text, and does not grow
    with how long or repetitive the secrets are. Measured as work, not time: bytes compared and places tried."""
    with probe("secrets made to make redaction quadratic"):
        secrets_, lines = adversarial(1)
        pick = random.Random(1)
        text = b"\n".join(pick.choice(lines) for _ in range(400)) + b"\n"
        full = work(secrets_, text)
        assert full["compared"] < 64 and full["tried"] + full["walks"] < 0.5, full
        assert work(secrets_, text * 4)["compared"] < 1.25 * full["compared"]  # four times the text, four times the work
        shorter = work(adversarial(4)[0], text)
        assert full["compared"] < 2 * shorter["compared"] and full["tried"] < 2 * shorter["tried"]  # secrets 4x as long
        assert stream(text, list(range(0, len(text), 4096))) == redact.redact(text.decode()).encode()


def test_a_repetitive_value_is_no_secret_and_runs_are_no_fragment(monkeypatch):
    """A value that is little but a run or an alternation is not taken for a secret, and no run in a secret starts a
    match: otherwise a token service could have every `====` rule and `----` line of the output cut out. A secret
    holding such a run is still redacted whole, run included."""
    monkeypatch.setattr(redact, "_secrets", set())
    monkeypatch.setattr(redact, "_compiled", None)
    for value in ["=" * 16000, "-=" * 40, "a" * 70_000, "========", "at-" + "a1" * 20, "=" * 100 + "abcdef"]:
        redact.add_secret(value)
    assert redact._secrets == set()
    secret = "=" * 64 + OPAQUE + "-" * 64
    redact.add_secret(secret)
    assert redact.redact(f"token {secret} ok") == "token [redacted] ok"
    ordinary = "=" * 30 + " 3 passed in 0.12s " + "=" * 30 + "\n" + "-" * 80 + "\n" + "=-" * 40 + "\n"
    for text in (ordinary, base64.b64encode(bytes(300)).decode(), "=" * 70_000):
        assert redact.redact(text) == text and stream(text.encode(), list(range(0, len(text), 4096))) == text.encode()


def strip_controls(text: str) -> str:
    return re.sub(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[]P][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b\([A-Z]|\x9b[0-?]*[@-~]|\x9d[^\x9c]*\x9c", "", text)


@st.composite
def coloured(draw):
    """A secret wrapped at any width from FRAGMENT on, terminal control sequences before each line (as `ls --color`
    or a logger colours them), the lines apart or run together."""
    secret = draw(st.sampled_from(SECRETS))
    width = draw(st.integers(16, 90))
    line_break = draw(st.sampled_from(["\n", "\r\n", "", " ", "\\n"]))
    prefix = draw(st.sampled_from(["", "2026-05-09T07:35:25Z ", "build-1  | "]))
    lines = [secret[i:i + width] for i in range(0, len(secret), width)]
    text = lines[0] + "".join(line_break + prefix + "".join(draw(st.lists(st.sampled_from(CONTROLS), min_size=1, max_size=3))) + line
                              for line in lines[1:])
    return secret, text


@settings(max_examples=300, deadline=None)
@given(coloured(), NOISE, st.data())
def coloured_lines_are_redacted(exposure, before, data):
    secret, shown = exposure
    text = f"{before} {shown}\n"
    encoded = text.encode()
    output = stream(encoded, data.draw(st.lists(st.integers(0, len(encoded)), max_size=12)))
    assert output == redact.redact(text).encode() and b"[redacted]" in output
    assert not leaks(strip_controls(output.decode()), secret)


def test_control_sequences_between_pieces_of_a_secret_count_as_separators():
    """CSI, OSC, DCS and two-byte escapes, and their C1 forms, between the lines of a wrapped secret hide nothing of it,
    in log text and in a stream cut anywhere (a sequence cut in two included)."""
    with probe("secret wrapped with terminal control sequences before each line"):
        coloured_lines_are_redacted()
    for width in (16, 20, 33):  # the review's case: each line dimmed, `\x1b[2m` (ending in a token letter) before it
        text = "\n".join("\x1b[2m" + OPAQUE[i:i + width] for i in range(0, len(OPAQUE), width))
        assert redact.redact(text) == "\x1b[2m[redacted]" and stream(text.encode(), [5, 30]) == b"\x1b[2m[redacted]"
    assert redact.redact(f"{OPAQUE[:20]}\x1b[0m\x1b[1m{OPAQUE[20:]}") == "[redacted]"  # recoloured mid-token


def wide_leaks(output: bytes, secret: str, codec: str) -> bool:
    """Does the output show FRAGMENT characters of the secret (its JWT header aside) as UTF-16?"""
    part = secret.split(".", 1)[1] if secret.startswith("eyJ") else secret
    return any(part[i:i + 16].encode(codec) in output for i in range(len(part) - 15))


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_a_secret_printed_as_utf16_is_redacted(codec):
    """UTF-16 (PowerShell's and .NET's output, `iconv -t UTF-16`) puts a NUL after or before every ASCII character; a
    terminal shows none, so the secret reads in full. Whole, or any FRAGMENT characters of it, it is redacted."""
    with probe(f"secret printed as {codec.upper()}"):
        for secret in SECRETS:
            for shown in (secret, secret[-20:], secret[-16:]):
                if shown != secret and len(secret) < 24:
                    continue
                text = f"token={shown}\n".encode(codec)
                for cuts in ([], [len(text) // 2], list(range(0, len(text), 3))):
                    output = stream(text, cuts)
                    assert b"[redacted]" in output and not wide_leaks(output, secret, codec), (shown, cuts)
                    assert output == redact.redact(text.decode()).encode()
        ordinary = "Step 3/12 : RUN make build, all tests passed".encode(codec)
        assert stream(ordinary, list(range(0, len(ordinary), 5))) == ordinary


def test_a_secret_in_json_with_escaped_slashes_is_redacted(monkeypatch):
    """Some JSON encoders (PHP's, Java's) write '/' as `\\/`: a secret with '/' in it, or its base64, is still found."""
    monkeypatch.setattr(redact, "_secrets", set())
    monkeypatch.setattr(redact, "_compiled", None)
    secret = "/".join(secrets.token_urlsafe(9) for _ in range(5))  # no 16 characters without a '/'
    redact.add_secret(secret)
    auth = base64.b64encode(b"oauth2accesstoken:" + secret.encode() + b"/").decode()
    for text in (json.dumps({"password": secret}), json.dumps({"auth": auth})):
        escaped = text.replace("/", "\\/")
        output = stream(escaped.encode(), list(range(0, len(escaped), 7)))
        assert b"[redacted]" in output and output == redact.redact(escaped).encode()
        assert not leaks(output.decode().replace("\\/", "/"), secret)
