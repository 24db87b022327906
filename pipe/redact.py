"""One redaction layer for everything the pipe prints: known secrets in their common encodings, anything
token-shaped, and control characters that inputs could use to forge or recolour a line.

Known secrets are caught as their bytes and as the part of any base64 text (standard or URL-safe, at any
alignment, padded or not, so Docker's `oauth2accesstoken:<token>` auth field too) that depends on them
alone, even split by whitespace or `\\n`-style escapes (JSON bodies) or wrapped onto lines that start with
a prefix of their own (a timestamp, `b64:`), as long as their first 12 characters or the 12 after those
are unbroken (a split in the first 12 shows what is before it). The whole span, line breaks included,
becomes one [redacted]. Matching is on bytes: the run container's output is redacted without being
decoded (StreamRedactor), and log text the same way (redact)."""

import base64
import logging
import re

REDACTED = "[redacted]"
_REDACTED = REDACTED.encode()
_MIN_SECRET = 8  # shorter values would redact ordinary words

# A secret's encodings are found through two needles, their first K bytes and the K after them (either one
# survives a split inside the other); from there matching skips any split, byte-exact otherwise.
_K = 12
_SEPARATOR = re.compile(rb"[\t\n\v\f\r ]|\\[nrt]")  # wrapped lines, and JSON's escaped line breaks
_SEPARATORS = re.compile(rb"(?:[\t\n\v\f\r ]|\\[nrt])*")
_DECORATION = 128  # what a line may start with before a secret wrapped onto it goes on (a timestamp, `b64:`)
_TOKEN_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=.")  # in canonical text
# '-' and '_' read as '+' and '/': one search covers standard and URL-safe base64 (and tokens' own dashes).
_CANONICAL = bytes.maketrans(b"-_", b"+/")

# JWTs (OIDC, ID and registry tokens: a base64url JSON header always starts `eyJ`) and Google OAuth
# access tokens (ya29.a0…, ya29.c.…, ya29.d.…), whether or not the pipe knows them. ASCII classes:
# tokens are base64url, nothing wider; dots only between segments, so a sentence's full stop stays.
# Each shape: its marker; its pattern; what a text ending in an unfinished one looks like; and, where one fails
# to match, how much after it no other can start (its first segment: that keeps runs like eyJeyJeyJ… linear).
_SHAPES = [
    (b"eyJ", re.compile(rb"eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*", re.ASCII),
     re.compile(rb"eyJ(?:[\w-]*+|[\w-]{4,}+\.[\w-]*+|[\w-]{4,}+\.[\w-]{4,}+\.[\w-]*+)\Z", re.ASCII),
     re.compile(rb"eyJ[\w-]*", re.ASCII)),
    (b"ya29", re.compile(rb"ya29(?:\.[\w-]+)+", re.ASCII), re.compile(rb"ya29(?:\.[\w-]++)*+\.?\Z", re.ASCII),
     re.compile(rb"ya29")),
]
# Text kept back while it may still become a match is bounded: past this, a pending match (a huge token-shaped
# run, or a secret split by this much whitespace) is settled as if the stream had ended.
_MAX_HELD = 16 * 1024

_secrets: set[str] = set()
_compiled = None


def add_secret(value: str | None) -> None:
    global _compiled
    for piece in _SEPARATOR.split((value or "").encode("utf-8", "surrogatepass")):  # matching skips separators
        secret = piece.decode("utf-8", "surrogatepass")
        if len(secret) >= _MIN_SECRET and secret not in _secrets:
            _secrets.add(secret)
            _compiled = None


def redact(text: str) -> str:
    data = text.encode("utf-8", "surrogatepass")
    return _matcher().scan(data, open_from=len(data) + 1)[0].decode("utf-8", "surrogatepass")


def printable(text: str) -> str:
    """One line to print: redacted, and every control character from inputs written as an escape."""
    return escape(redact(text))


def escape(text: str) -> str:
    """Every character that does not print written as Python writes it (`\\x1b`, `\\n`, `\\u202e`): C0 and C1
    controls (ESC, CR, LF, …), the Unicode line separators and bidirectional overrides that can fake a line or
    reorder one, and lone surrogates (undecodable bytes in a variable), which a UTF-8 stream cannot print."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class StreamRedactor:
    """Redacts one output stream (the run container's stdout, or its stderr) as it arrives.

    A tail that may still become a match is held until the next chunk or close(); everything else is
    returned at once. The output is byte for byte the input but for the redactions, whatever the chunking
    (binary output and multi-byte characters split between chunks included); its own control characters
    are the script's and pass through.
    """

    def __init__(self):
        self._held = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._held + chunk
        out, cut = _matcher().scan(data, open_from=max(0, len(data) - _MAX_HELD))
        self._held = data[cut:]
        return out

    def close(self) -> bytes:
        out, _ = _matcher().scan(self._held, open_from=len(self._held) + 1)
        self._held = b""
        return out


def _encodings(secret: str) -> set[bytes]:
    """The secret's bytes, and the part of base64(anything + secret + anything) set by the secret alone,
    for each of its 3 alignments (the first and last characters also carry bits of the neighbours)."""
    raw = secret.encode("utf-8", "surrogatepass")
    forms = {raw}
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + raw)
        forms.add(encoded[(8 * offset + 5) // 6:8 * (offset + len(raw)) // 6])  # whole 6-bit groups of the secret
    return {form.translate(_CANONICAL) for form in forms}


def _walk(text: bytes, at: int, form: bytes, done: int, final: bool) -> int | None:
    """Match form[done:] at text[at:], skipping separators and, after a line break, what the next line starts
    with: where it ends, _PENDING when the text runs out first (unless final), None when it differs."""
    end = len(text) - (not final and text.endswith(b"\\"))  # a trailing backslash may open a `\n`
    while done < len(form):
        gap = _SEPARATORS.match(text, at, end).end() if at < end else at
        wrapped, at = text.find(b"\n", at, gap) >= 0, gap
        if at >= end:
            return None if final else _PENDING
        if wrapped:  # the next part is at the line's start, or after its prefix
            at = _resume(text, at, end, form[done:done + _K], final)
            if at is None or at == _PENDING:
                return at
        stop = _SEPARATOR.search(text, at, end)
        size = min((stop.start() if stop else end) - at, len(form) - done)
        if text[at:at + size] != form[done:done + size]:
            return None
        at, done = at + size, done + size
    return at


def _resume(text: bytes, line: int, end: int, needle: bytes, final: bool) -> int | None:
    """Where a secret wrapped onto this line goes on after the line's own start (a log prefix, `b64:`): at a
    word's start within _DECORATION bytes; _PENDING while that much of the line has not arrived; else None."""
    limit = line + _DECORATION + len(needle)
    line_end = text.find(b"\n", line, min(limit, end))
    window = line_end if line_end >= 0 else min(limit, end)
    found = text.find(needle, line, window)
    while found >= 0:
        if found == line or text[found - 1] not in _TOKEN_BYTES:
            return found
        found = text.find(needle, found + 1, window)
    return _PENDING if line_end < 0 and end < limit and not final else None


_PENDING = -1


def _is_continuation(byte: int) -> bool:
    """A UTF-8 continuation byte: no match starts there, so redacting never splits a character."""
    return 0x80 <= byte < 0xC0


class _Matcher:
    """Everything that finds the current secrets and shapes, built once per set of secrets."""

    def __init__(self, secrets: set[str]):
        forms = sorted({form for secret in secrets for form in _encodings(secret)}, key=lambda f: (-len(f), f))
        self.needles = []  # (needle, priority: longest form first, form, k, whether it is the second needle)
        self.tails = {b"e", b"ey", b"y", b"ya", b"ya2"}  # unfinished shape markers
        for priority, form in enumerate(forms):
            k = min(_K, len(form) // 2)
            self.needles += [(form[:k], priority, form, k, False), (form[k:2 * k], priority, form, k, True)]
            self.tails |= {form[:size] for size in range(1, k)}
            self.tails |= {form[first:last] for first in range(1, k + 1) for last in range(first + 1, 2 * k)
                           if not _is_continuation(form[first])}
        self.shapes = [(marker, priority, *patterns) for priority, (marker, *patterns) in enumerate(_SHAPES, start=len(forms))]
        self.longest_tail = max(map(len, self.tails))
        self.tail_ends = {tail[-1] for tail in self.tails}

    def scan(self, data: bytes, open_from: int) -> tuple[bytes, int]:
        """Redact data up to the point from which it may still become a match (at or after open_from;
        past len(data), nothing is pending): the output, and where it stops."""
        text = data.translate(_CANONICAL)
        hits = sorted(self._hits(data, text, open_from), key=lambda hit: hit[:2])
        out, pos, first = [], 0, 0
        while True:
            while first < len(hits) and hits[first][0] + _K < pos:  # too far back to start at pos any more
                first += 1
            winner, at = _winner(hits, first, pos)
            tail = self._tail(text, max(pos, open_from))
            if winner is None or at >= tail or winner[3] == _PENDING:
                cut = tail if winner is None else min(at, tail)
                out.append(data[pos:cut])
                return b"".join(out), cut
            out += [data[pos:at], _REDACTED]
            pos = winner[3]

    def _hits(self, data: bytes, text: bytes, open_from: int) -> list:
        """Every match or pending match as (start, priority, latest start, end or _PENDING): a match found
        through its second needle may start later, down to that needle, when an earlier one overlaps it."""
        hits = []
        for needle, priority, form, k, second in self.needles:
            at = text.find(needle)
            while at >= 0:
                start = at - _head(text, at, form, k) if second else at
                end = _walk(text, at + k, form, 2 * k if second else k, final=start < open_from)
                if end is not None:
                    hits.append((start, priority, at if second else start, end))
                at = text.find(needle, at + 1)
        for marker, priority, shape, unfinished, failed in self.shapes:
            at = data.find(marker)
            while at >= 0:
                if at >= open_from and unfinished.match(data, at):
                    hits.append((at, priority, at, _PENDING))
                    break  # any later one is pending too, and only the first matters
                match = shape.match(data, at) or failed.match(data, at)
                if match.re is shape:
                    hits.append((at, priority, at, match.end()))
                at = data.find(marker, match.end())
        return hits

    def _tail(self, text: bytes, start: int) -> int:
        """Where the longest unfinished start of a needle or a shape's marker at the end begins (len: none)."""
        if start >= len(text) or text[-1] not in self.tail_ends:
            return len(text)
        for size in range(min(self.longest_tail, len(text) - start), 0, -1):
            if text[-size:] in self.tails:
                return len(text) - size
        return len(text)


def _head(text: bytes, at: int, form: bytes, k: int) -> int:
    """How many of the form's first k units run on, unbroken, right before its second needle at `at`."""
    size = min(k, at)
    while size and (text[at - size:at] != form[k - size:k] or _is_continuation(form[k - size])):
        size -= 1
    return size


def _winner(hits: list, first: int, pos: int):
    """The hit that starts earliest at or after pos (first by priority on a tie), and where it starts."""
    best = None
    for index in range(first, len(hits)):
        hit = hits[index]
        start, priority, latest, _ = hit
        if start > pos:
            return (hit, start) if best is None else (best, pos)
        if latest >= pos and (best is None or priority < best[1]):
            best = hit
    return best, pos


def _matcher() -> _Matcher:
    global _compiled
    if _compiled is None:
        _compiled = _Matcher(_secrets)
    return _compiled


# Attributes every record has; anything else came in through `extra=` (google-auth puts whole
# request bodies and headers there, the subject token included).
_STANDARD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _scrub(value):
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {key: _scrub(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(item) for item in value]
    return value


class RedactingFilter(logging.Filter):
    """Redacts each record after formatting its arguments, for our logs and the libraries', and makes it one
    line: only a DEBUG record's traceback keeps its line breaks. Runs before the formatter adds its colours."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a library's mismatched format args: logging would print a traceback; keep the text
            message = f"{record.msg} {record.args}"
        trace = logging.Formatter().formatException(record.exc_info) if record.exc_info else record.exc_text
        stack = record.stack_info
        record.exc_info = None  # formatted above; formatters print exc_text instead
        if record.levelno <= logging.DEBUG:
            record.exc_text, record.stack_info = (trace and _multiline(trace)), (stack and _multiline(stack))
        else:
            message = "\n".join(part for part in (message, trace, stack) if part)
            record.exc_text = record.stack_info = None
        record.msg, record.args = printable(message), ()
        for key in set(vars(record)) - _STANDARD_ATTRIBUTES:
            setattr(record, key, _scrub(getattr(record, key)))
        return True


def _multiline(text: str) -> str:
    return "\n".join(escape(line) for line in redact(text).split("\n"))


def install() -> None:
    """Attach the filter to every root handler (handler filters also see propagated library records),
    and to logging's last-resort handler, which prints when no handler is configured."""
    for handler in [*logging.getLogger().handlers, logging.lastResort]:
        if handler and not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
