"""Inputs shared by the unit tests: hostile shapes a server, the Docker daemon or a committed file can send, any text
for parsers, and samples of what users paste (step tokens, key files, gcloud's credential configuration)."""

import base64
import functools
import json
import string

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import example
from hypothesis import strategies as st

PROVIDER = "projects/123456789012/locations/global/workloadIdentityPools/bb-pool/providers/bb-provider"
SA = "deployer@my-project.iam.gserviceaccount.com"
MAX_LINE = 1200  # the longest error template plus 80 echoed characters, each escaped to at most 10


# --- hostile inputs -------------------------------------------------------------------------------------------

# Fragments the grammars (JSON, XML, URLs, the daemon's wording, tokens) care about, and characters that break lines,
# reorder them, or cannot be encoded.
PIECES = [
    '"', "'", "\\", '\\"', "[", "]", "{", "}", "<", ">", "</", "<Code>", "</Code>", "<Message>", "<Details>", "<?xml ",
    ":", ": ", "::", "/", "//", "/v2/", "/manifests/", "/blobs/", "https://", "http://", "@", "=", ",", ";", "#", "?", "%",
    " ", "\t", "\n", "\r\n", "\x00", "\x1b[31m", "\x7f", "\x85", "\u202e", "\u2066", "\u200f", "\u2028", "\ufeff", "\ud800",
    "é", "日本", "😀", "9" * 40, "-" * 20, "a" * 64,
    '"message": "', '{"error": ', '{"errors": [', '"code": ', "denied", "unauthorized", "manifest unknown", "toomanyrequests",
    "EOF", "HTTP ", "status: ", "500", "429", "503 Service Unavailable", "Status 405", "project ", "projects/", "constraints/",
    "apis/api/", "googleapis.com", "pull access denied for ", "manifest for ", "request \"/v2/", "eyJ", "ya29.", "-----BEGIN",
]
PIECE = st.sampled_from(PIECES)
# Long runs of one piece (repeated separators, unclosed brackets, quotes and tags), glued fragments, any text.
RUNS = st.builds(lambda before, piece, count, after: before + piece * count + after,
                 st.text(max_size=8), PIECE, st.integers(1, 4000), st.text(max_size=8))
GLUED = st.lists(st.one_of(PIECE, st.text(max_size=4)), max_size=40).map("".join)
ADVERSARIAL = st.one_of(st.text(), GLUED, RUNS)
# Bytes: any, the text above in UTF-8, and UTF-8 broken on purpose (lone continuation bytes, truncated sequences,
# overlong forms, UTF-16 and UTF-32 text).
BROKEN_UTF8 = [b"\xff", b"\xfe", b"\x80", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\xc0\xaf", b"\xed\xa0\x80"]
ADVERSARIAL_BYTES = st.one_of(
    st.binary(max_size=400),
    ADVERSARIAL.map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.lists(st.one_of(st.sampled_from(BROKEN_UTF8), PIECE.map(lambda p: p.encode("utf-8", "surrogatepass"))), max_size=40).map(b"".join),
    st.builds(lambda t, codec: t.encode(codec, "surrogatepass"), GLUED, st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "utf-32"])),
)


def big(piece: str, size: int) -> str:
    """`piece` repeated to about `size` characters."""
    return piece * (size // len(piece) + 1)


# Large server-controlled texts: 60 KB and 300 KB of repeated separators and unclosed constructs.
BIG_TEXTS = [
    big("[", 60_000), big("{", 300_000), big('"', 60_000), big("\\", 300_000), big('"\\', 60_000), big('{"a":', 300_000),
    big('["', 60_000), big(": ", 300_000), big(": denied", 60_000), big("<Code>", 300_000), big("https://", 60_000),
    big('"message": "', 300_000), big("a ", 60_000), '"' + big("x", 300_000), big("/", 60_000), big("9", 300_000),
]


def with_examples(*texts, rest: tuple = ()):
    """An explicit @example for each text, followed by the test's other arguments `rest`."""
    def decorate(test):
        for text in reversed(texts):
            test = example(text, *rest)(test)
        return test
    return decorate


# --- any text, for parsers -------------------------------------------------------------------------------------

# Any text (control characters included), plus text glued from the fragments the grammars care
# about, so the examples also reach the deeper branches (st.text alone rarely writes "http://[").
GRAMMAR = string.ascii_letters + string.digits + "/:@._-+ \t\n=,?#[]²٣ä"
FRAGMENTS = [
    "http://", "https://", "//iam.googleapis.com/", "projects/", "my-proj", "123", "/locations/global/",
    "workloadIdentityPools/", "bb-pool", "/providers/", "gcp-", "localhost", "127.0.0.1", "[::1", "]", ":", "@",
    "sha256:", "a" * 64, "/", ".", "-", "_", "²", "٣", "\n", " ", "=", ",", "true", "0", "s",
]
TEXT = st.one_of(
    st.text(),
    st.text(alphabet=GRAMMAR),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(alphabet=GRAMMAR, max_size=2)), max_size=8).map("".join),
)

JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=20,
)

# --- what users paste -------------------------------------------------------------------------------------------


def jwt(claims) -> str:
    """An unsigned, JWT-shaped token: the pipe reads claims locally and leaves the signature to Google."""
    def part(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()

    payload = claims if isinstance(claims, str) else json.dumps(claims)
    return f"{part(json.dumps({'alg': 'RS256', 'typ': 'JWT'}))}.{part(payload)}.c2lnbmF0dXJl"


@functools.cache
def service_account_key() -> dict:
    """A service-account key file as the console downloads it, with a real (throwaway) RSA private key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return {
        "type": "service_account", "project_id": "my-project", "private_key_id": "0f3a9c1e5b7d2f4a6c8e0b1d3f5a7c9e1b3d5f7a",
        "private_key": pem, "client_email": SA, "client_id": "104729384756102938475",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": "https://oauth2.googleapis.com/token",
    }


def key_secrets() -> tuple[str, ...]:
    """Every line of the private key and its id: none may appear in any output, escaped or not."""
    key = service_account_key()
    body = [line for line in key["private_key"].splitlines() if line and not line.startswith("-----")]
    return (key["private_key_id"], *body)


def wrapped_base64(text: str) -> str:
    """What `base64 key.json` prints: 76 columns per line."""
    return base64.encodebytes(text.encode()).decode()


def gcloud_config(**changes) -> dict:
    """`gcloud iam workload-identity-pools create-cred-config` output (gcloud 528), with changes; None removes a field."""
    config = {
        "universe_domain": "googleapis.com",
        "type": "external_account",
        "audience": "//iam.googleapis.com/" + PROVIDER,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": "https://sts.googleapis.com/v1/token",
        "credential_source": {"file": "/path/to/oidc.jwt"},
        "service_account_impersonation_url": f"https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{SA}:generateAccessToken",
    }
    config.update(changes)
    return {key: value for key, value in config.items() if value is not None}
