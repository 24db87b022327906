"""One redaction layer for everything the pipe prints: known secrets in their common encodings, fragments of them,
and anything token-shaped. (Escaping what does not print is pipe.shown's; log records go through pipe.logs.)

Known secrets are caught as their bytes and as the part of any base64 text (standard or URL-safe, at any
alignment, padded or not, so Docker's `oauth2accesstoken:<token>` auth field too) that depends on them alone,
whole or in part: any FRAGMENT or more consecutive characters of one are redacted wherever they appear (a token
cut short by a line's length limit, or a script printing part of one). A match goes on across whitespace and
`\\n`-style escapes (JSON bodies) and onto lines that start with a prefix of their own (a timestamp, `b64:`), so
a wrapped secret becomes one [redacted], line breaks included; a piece shorter than FRAGMENT before the first
break may show. Matching is on bytes: the run container's output is redacted without being decoded
(StreamRedactor), and log text the same way (redact), with the same result whatever the chunking."""

import base64
import re

REDACTED = "[redacted]"
_REDACTED = REDACTED.encode()
_MIN_SECRET = 8  # shorter values would redact ordinary words
FRAGMENT = 16  # CHOSEN: 16 characters of a token are 96 bits; fewer are found only as a whole short secret

# Secrets are found through their 8-byte grams: the text is sampled every 8 bytes, so any run of 15 or more bytes of
# a secret holds a sampled gram, whatever its alignment; from there the match extends both ways.
_GRAM = 8
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


def _encodings(secret: str) -> dict[bytes, int]:
    """The secret's bytes, and the part of base64(anything + secret + anything) set by the secret alone, for each of
    its 3 alignments (the first and last characters also carry bits of the neighbours): each form with how many of
    its first bytes are public (a JWT's header, the same in every token signed alike), where no fragment starts."""
    raw = secret.encode("utf-8", "surrogatepass")
    public = raw.index(b".") + 1 if _JWT_HEADER.match(raw) else 0
    forms = {raw: public}
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + raw)
        start = (8 * offset + 5) // 6
        core = encoded[start:8 * (offset + len(raw)) // 6]  # whole 6-bit groups of the secret
        forms[core] = max(forms.get(core, 0), -(-8 * (offset + public) // 6) - start if public else 0)
    return {form.translate(_CANONICAL): public for form, public in forms.items()}


_JWT_HEADER = re.compile(rb"eyJ[\w-]+\.")


_PENDING = -1


def _walk(text: bytes, at: int, form: bytes, done: int, final: bool) -> tuple[int, int]:
    """Match form[done:] at text[at:], skipping separators and, after a line break, what the next line starts with.
    (where the match ends in the text, how much of the form it covers); the end is _PENDING when the text runs out
    mid-form (unless final)."""
    end = len(text) - (not final and text.endswith(b"\\"))  # a trailing backslash may open a `\n`
    while done < len(form):
        gap = _SEPARATORS.match(text, at, end).end() if at < end else at
        wrapped = text.find(b"\n", at, gap) >= 0
        if gap >= end:
            return (at if final else _PENDING), done
        resumed = gap
        if wrapped:  # the next part is at the line's start, or after its prefix
            resumed = _resume(text, gap, end, form[done:done + _GRAM], final)
            if resumed is None:
                return at, done
            if resumed == _PENDING:
                return _PENDING, done
        stop = _SEPARATOR.search(text, resumed, end)
        size = min((stop.start() if stop else end) - resumed, len(form) - done)
        same = _common_prefix(text, resumed, form, done, size)
        if same == 0:
            return at, done
        at, done = resumed + same, done + same
        if same < size:
            return at, done
    return at, done


def _common_prefix(text: bytes, at: int, form: bytes, done: int, size: int) -> int:
    """How many of the next `size` bytes of text and form agree (compared in halves: no byte-by-byte loop)."""
    low, high = 0, size
    while low < high:
        middle = (low + high + 1) // 2
        if text[at:at + middle] == form[done:done + middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _common_suffix(text: bytes, at: int, form: bytes, done: int) -> int:
    """How many bytes before text[at] and form[done] agree, counting back (no separators: a match starts unbroken)."""
    low, high = 0, min(at, done)
    while low < high:
        middle = (low + high + 1) // 2
        if text[at - middle:at] == form[done - middle:done]:
            low = middle
        else:
            high = middle - 1
    return low


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


def _is_continuation(byte: int) -> bool:
    """A UTF-8 continuation byte: no match starts there, so redacting never splits a character."""
    return 0x80 <= byte < 0xC0


class _Matcher:
    """Everything that finds the current secrets and shapes, built once per set of secrets."""

    def __init__(self, secrets: set[str]):
        public: dict[bytes, int] = {}
        for secret in secrets:
            for form, prefix in _encodings(secret).items():
                public[form] = min(public.get(form, prefix), prefix)
        forms = sorted(public, key=lambda f: (-len(f), f))
        self.forms = forms
        self.public = [public[form] for form in forms]
        self.grams: dict[bytes, list[tuple[int, int]]] = {}
        self.short: list[bytes] = []  # whole secrets too short to hold FRAGMENT characters: found whole only
        for index, form in enumerate(forms):
            if len(form) < FRAGMENT:
                self.short.append(form)
                continue
            for offset in range(public[form], len(form) - _GRAM + 1):  # a whole JWT is still found, from its payload
                self.grams.setdefault(form[offset:offset + _GRAM], []).append((index, offset))

    def scan(self, data: bytes, open_from: int) -> tuple[bytes, int]:
        """Redact data up to the point from which it may still become a match (at or after open_from;
        past len(data), nothing is pending): the output, and where it stops."""
        text = data.translate(_CANONICAL)
        cut = self._tail(text, open_from)
        out, pos = [], 0
        for start, end in _merged(self._secrets(text, open_from) + self._shapes(data, open_from)):
            if start >= cut or end == _PENDING:
                cut = min(cut, start)
                break
            out += [data[pos:start], _REDACTED]
            pos = end
        out.append(data[pos:cut])
        return b"".join(out), max(cut, pos)

    def _secrets(self, text: bytes, open_from: int) -> list[tuple[int, int]]:
        spans, at, n = [], 0, len(text)
        while at + _GRAM <= n:
            hits = self.grams.get(text[at:at + _GRAM])
            span = max((s for index, offset in hits if (s := self._extend(text, at, index, offset, open_from))),
                       key=lambda s: (s[1] == _PENDING, s[1] - s[0]), default=None) if hits else None
            if span is None:
                at += _GRAM
                continue
            spans.append(span)
            if span[1] == _PENDING:
                break  # the text from here on is held back
            at = max(at + _GRAM, span[1])
        for form in self.short:  # whole short secrets only, split or not, found through either half
            half = len(form) // 2
            for needle, done in ((form[:half], 0), (form[half:2 * half], half)):
                found = text.find(needle)
                while found >= 0:
                    start = found - _common_suffix(text, found, form, done)  # a split before the second half shows its start
                    while start < found and _is_continuation(text[start]):
                        start += 1
                    if not _is_continuation(text[start]):
                        end, last = _walk(text, found + len(needle), form, done + len(needle), final=start < open_from)
                        if end == _PENDING or last == len(form):
                            spans.append((start, end))
                    found = text.find(needle, found + 1)
        return spans

    def _extend(self, text: bytes, at: int, index: int, offset: int, open_from: int) -> tuple[int, int] | None:
        """The span of the form's occurrence through the gram at text[at:] (form[offset:]), if it is a whole form or
        at least FRAGMENT bytes of one; its end _PENDING when more text may continue it."""
        form = self.forms[index]
        back = min(_common_suffix(text, at, form, offset), offset - self.public[index])  # a public header stays as it is
        start, first = at - back, offset - back
        while start < at and _is_continuation(text[start]):
            start, first = start + 1, first + 1
        # A match starts only at an unbroken run of FRAGMENT bytes (a shorter first piece of a wrapped secret shows):
        # such a run holds a sampled gram whatever the alignment, so logs and any chunking of a stream agree.
        stop = _SEPARATOR.search(text, at, min(len(text), at + len(form)))
        piece = (stop.start() if stop else min(len(text), at + len(form) - offset)) - at
        unbroken = at - start + _common_prefix(text, at, form, offset, min(piece, len(form) - offset))
        if unbroken < FRAGMENT and not (first == 0 and unbroken == len(form)):
            return None if stop or at + piece < len(text) or start < open_from else (start, _PENDING)
        end, last = _walk(text, at + _GRAM, form, offset + _GRAM, final=start < open_from)
        if end == _PENDING:
            return start, _PENDING
        if last - first >= FRAGMENT or (first == 0 and last == len(form)):
            return start, end
        return None

    def _shapes(self, data: bytes, open_from: int) -> list[tuple[int, int]]:
        spans = []
        for marker, shape, unfinished, failed in _SHAPES:
            at = data.find(marker)
            while at >= 0:
                if at >= open_from and unfinished.match(data, at):
                    spans.append((at, _PENDING))
                    break  # any later one is pending too, and only the first matters
                match = shape.match(data, at) or failed.match(data, at)
                if match.re is shape:
                    spans.append((at, match.end()))
                at = data.find(marker, match.end())
        return spans

    def _tail(self, text: bytes, open_from: int) -> int:
        """Where the run of token bytes at the end starts, at most FRAGMENT - 1 of them (a fragment or a shape's
        marker may be starting there), or len(text) when the text is final or ends otherwise."""
        n = len(text)
        if open_from > n:
            return n
        start = n
        while start > max(n - (FRAGMENT - 1), open_from, 0) and text[start - 1] in _TOKEN_BYTES:
            start -= 1
        return start


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping spans as one; a group with a pending member is pending from the group's start."""
    groups: list[list[int]] = []
    for start, end in sorted(spans):
        if groups and groups[-1][1] != _PENDING and start < groups[-1][1]:
            groups[-1][1] = _PENDING if end == _PENDING else max(groups[-1][1], end)
        elif groups and groups[-1][1] == _PENDING:
            break  # everything from a pending group on is held
        else:
            groups.append([start, end])
    return [(start, end) for start, end in groups]


def _matcher() -> _Matcher:
    global _compiled
    if _compiled is None:
        _compiled = _Matcher(_secrets)
    return _compiled
