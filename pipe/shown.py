"""What the pipe may show of a value, and how. Every line the pipe prints is one printable line (no terminal codes,
line breaks or bidirectional controls from any input), no value that could be a key or a token is ever shown, and
values are cut to a bound."""

import re

from pipe import redact

ECHO_LIMIT = 80  # characters of a value shown in an error line
CLAIM_LIMIT = 256  # characters of a token claim shown (a workspace's issuer URL is well under it)
# Key material pasted into the wrong variable: PEM blocks, key-file fields, and long base64 runs mixing
# upper case, lower case and digits ('/' splits runs, so resource names and paths never count).
_KEY_MARKERS = re.compile(r"-----BEGIN|PRIVATE KEY|private_key|client_secret", re.IGNORECASE)
_BASE64_RUN = re.compile(r"[A-Za-z0-9+_=-]{32,}")
_URL_USERINFO = re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*://[^/?#\s@]*@")
_SECRET_WINDOW = 1024  # what looks_secret reads: a value is shown cut to 80 characters, so a secret starting among them is caught
_SHORT_PATH = re.compile(r"[A-Za-z0-9._/-]{1,80}")


def escape(text: str) -> str:
    """Every character that does not print written as Python writes it (`\\x1b`, `\\n`, `\\u202e`): C0 and C1
    controls (ESC, CR, LF, …), the Unicode line separators and bidirectional overrides that can fake a line or
    reorder one, and lone surrogates (undecodable bytes in a variable), which a UTF-8 stream cannot print."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def line(text: str) -> str:
    """One line to print: every known secret and token shape redacted, every non-printing character escaped."""
    return escape(redact.redact(text))


def clipped(text: str, limit: int = ECHO_LIMIT) -> str:
    """At most `limit` characters, non-printing ones escaped, then … when cut."""
    return escape(text[:limit]) + ("…" if len(text) > limit else "")


def looks_secret(text: str) -> bool:
    """Could this be a key, a token or a password? Then nothing shows it."""
    text = text[:_SECRET_WINDOW]
    if _KEY_MARKERS.search(text) or _URL_USERINFO.search(text) or redact.redact(text) != text:  # JWTs, ya29.…, known secrets
        return True
    return any(re.search("[a-z]", run) and re.search("[A-Z]", run) and re.search("[0-9]", run) for run in _BASE64_RUN.findall(text))


def echo(value: str) -> str:
    """A value as an error line shows it: quoted with control characters escaped (repr), the first 80 characters
    only, or (hidden) when it could be a secret."""
    if looks_secret(value):
        return "(hidden)"
    if len(value) <= ECHO_LIMIT:
        return repr(value)
    return f"{value[:ECHO_LIMIT]!r}… ({len(value)} characters)"


def path(value: str, exists: bool = False) -> str:
    """A variable that should be a path, shown only when it plainly is one: short, path characters only, and with a
    '.' or '/' or naming something on disk. Anything else (a pasted file's JSON or base64) is hidden."""
    text = value.strip()
    if _SHORT_PATH.fullmatch(text) and (exists or "." in text or "/" in text) and not looks_secret(text):
        return repr(text)
    return "(value hidden)"


def claim(value) -> str:
    """A JSON value from a token or a server, for a message: printable, bounded, never raising whatever it is."""
    if isinstance(value, str):
        return clipped(value, CLAIM_LIMIT)
    if isinstance(value, bool) or value is None:
        return "true" if value is True else "false" if value is False else "null"
    if isinstance(value, int | float):
        try:
            return clipped(repr(value), CLAIM_LIMIT)
        except ValueError:  # Python writes no int of over 4300 digits as text (exp - iat of two such claims)
            return "(a number too long to show)"
    return f"(a JSON {'list' if isinstance(value, list) else 'object'})"
