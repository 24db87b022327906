"""One redaction layer for everything the pipe prints: known secrets in their common encodings, fragments of them,
and anything token-shaped. (Escaping what does not print is pipe.shown's; log records go through pipe.logs.)

Known secrets are caught as their bytes; as the part of any base64 text (standard or URL-safe, at any alignment,
padded or not, so Docker's `oauth2accesstoken:<token>` auth field too) that depends on them alone; both of these with
'/' written `\\/` (JSON, as some encoders write it); and as UTF-16 in either byte order (its NULs do not show in a
terminal). Whole or in part: any FRAGMENT or more consecutive characters of one are redacted wherever they appear (a
token cut short by a line's length limit, or a script printing part of one). A match goes on across whitespace,
`\\n`-style escapes (JSON bodies) and terminal control sequences (colours, titles, hyperlinks: CSI, OSC and the like,
ESC or C1), and onto lines that start with a prefix of their own (a timestamp, `b64:`), so a wrapped secret becomes
one [redacted], line breaks included; a piece shorter than FRAGMENT before the first break may show (and a secret
wrapped into pieces all that short is not found: a match starts only at an unbroken FRAGMENT). Runs of one
character (`====`) and two-character alternations carry nothing of a secret and are what ordinary output is made of:
no match starts in one, and a value that is little else is not taken for a secret (_plain, _distinctive).
Matching is on bytes: the run container's output is redacted without being decoded (StreamRedactor), and log text
the same way (redact), with the same result whatever the chunking, and in time linear in the text whatever the
secrets are (_CANDIDATES, and comparisons whose work follows what they find)."""

import base64
import re

REDACTED = "[redacted]"
_REDACTED = REDACTED.encode()
_MIN_SECRET = 8  # shorter values would redact ordinary words
FRAGMENT = 16  # CHOSEN: 16 characters of a token are 96 bits; fewer are found only as a whole short secret

# Secrets are found through their 8-byte grams: the text is sampled every 8 bytes, so any run of 15 or more bytes of
# a secret holds a sampled gram, whatever its alignment; from there the match extends both ways.
_GRAM = 8
# CHOSEN: at most this many places in the secrets are tried for one gram of the text. Random secrets never repeat
# a gram (8 base64 characters are 48 bits), so this only bounds periodic ones ("abc" * 5000 would otherwise give
# thousands of places, each tried at every sample) and many secrets sharing a stretch (JWTs of one issuer): the
# first places kept still match such a stretch, and a match ending early is taken up at the next sample.
_CANDIDATES = 8
# Terminal control sequences, which a script may print between pieces of a secret (colouring each line of a
# wrapped token) and a terminal does not show: CSI (ESC [ ... final byte), OSC, DCS, SOS, PM and APC (ESC ] ... BEL
# or ST), each also in its C1 form as UTF-8 writes it (U+009B, U+009D, ...: a lone 0x9b byte is no character in a
# UTF-8 stream, and a terminal reading one shows a replacement sign), and two-byte escapes (ESC ( B, ESC 7). Bounded:
# a longer one is not skipped (its text shows, and a match stops at it).
_CONTROL = (rb"(?:(?:\x1b\[|\xc2\x9b)[0-?]{0,64}[ -/]{0,8}[@-~]"
            rb"|(?:\x1b[]PX^_]|\xc2[\x90\x98\x9d\x9e\x9f])[ -~\x80-\xff]{0,200}?(?:\x07|\x1b\\|\xc2\x9c)"
            rb"|\x1b[ -/]{0,8}[0-OQ-WYZ\\`a-~])")
_CONTROL_MAX = 256  # the longest one above, and then some
_SEPARATOR = re.compile(rb"[\t\n\v\f\r ]|\\[nrt]|" + _CONTROL)  # wrapped lines, JSON's escaped breaks, controls
_SEPARATORS = re.compile(rb"(?:[\t\n\v\f\r ]|\\[nrt]|" + _CONTROL + rb")*")
_CONTROL_BEFORE = re.compile(_CONTROL + rb"\Z")  # searched with endpos: one ends right there
# How a text may end in the start of a separator (a `\` before its `n`, a control sequence not finished yet): a match
# in progress waits for the next chunk rather than stop there, so the chunking changes nothing.
_UNFINISHED = re.compile(rb"(?:(?<!\x1b)\\|\xc2|(?:\x1b\[|\xc2\x9b)[0-?]{0,64}[ -/]{0,8}"
                         rb"|(?:\x1b[]PX^_]|\xc2[\x90\x98\x9d\x9e\x9f])[ -~\x80-\xff]{0,200}\x1b?|\x1b[ -/]{0,8})\Z")
_DECORATION = 128  # what a line may start with before a secret wrapped onto it goes on (a timestamp, `b64:`)
_TOKEN_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=.")  # in canonical text
_HELD_BYTES = _TOKEN_BYTES | frozenset(b"\\")  # and what JSON writes before a '/'
# The end of a text that may be the start of a secret written as UTF-16: ASCII characters alternating with NULs
# (at most 2 * FRAGMENT - 2 bytes of a secret, and the NUL before them).
_WIDE_TAIL = re.compile(rb"(?:\x00?(?:[!-~]\x00)+|\x00)[!-~]?\Z")
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
        if len(secret) >= _MIN_SECRET and secret not in _secrets and _distinctive(piece):
            _secrets.add(secret)
            _compiled = None


def _plain(gram: bytes) -> bool:
    """A gram of at most two different bytes: a run (`========`, `AAAAAAAA` in base64 of zeros, `=\\0=\\0` in UTF-16)
    or an alternation (`-=-=-=-=`). Rules, padding and progress bars are made of these; a random base64 secret holds
    one with a chance of 2^-29 a gram. CHOSEN: no match starts at one, so no secret, however made, redacts them."""
    first, second, third = gram[0], gram[1], gram[2]
    return not (first != second != third != first) and len(set(gram)) <= 2  # three differ: no set needed


def _distinctive(raw: bytes) -> bool:
    """Can a scan tell this value from ordinary output? Only then is it taken for a secret: it must hold 8 grams in
    a row that are not plain (15 bytes: one of them is sampled wherever it is printed), or all of its grams if it has
    fewer. CHOSEN: `=` * 16000, `ab` * 20 or `at-` + `a1` * 20 are not secrets. No issuer mints one; what it would
    redact is ordinary output (a token service returning one could cut every `====` line out of the run's output);
    printed, it shows nothing but itself; and it would be found only where a sample fell on its few other bytes. A
    secret that merely holds such runs is kept, and redacted whole, runs included; a run alone is no fragment of it."""
    need, run = min(_GRAM, len(raw) - _GRAM + 1), 0
    for at in range(len(raw) - _GRAM + 1):
        run = 0 if _plain(raw[at:at + _GRAM]) else run + 1
        if run >= need:
            return True
    return False


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


def _encodings(secret: str) -> dict[bytes, tuple[int, int]]:
    """The forms the secret may be printed in, canonical, each with how many of its first bytes are public (a JWT's
    header, the same in every token signed alike: no fragment starts there) and how many bytes of it make a fragment.

    The secret's bytes, and the part of base64(anything + secret + anything) set by the secret alone, for each of
    its 3 alignments (the first and last characters also carry bits of the neighbours); each of those with '/'
    written `\\/` as some JSON encoders do; and its UTF-16, both byte orders, where a fragment is FRAGMENT characters
    (twice as many bytes, but for the NUL that one of its ends does without)."""
    raw = secret.encode("utf-8", "surrogatepass")
    public = raw.index(b".") + 1 if _JWT_HEADER.match(raw) else 0
    forms = {raw: public}
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + raw)
        start = (8 * offset + 5) // 6
        core = encoded[start:8 * (offset + len(raw)) // 6]  # whole 6-bit groups of the secret
        forms[core] = max(forms.get(core, 0), -(-8 * (offset + public) // 6) - start if public else 0)
    for form, prefix in list(forms.items()):
        if b"/" in form:
            forms[form.replace(b"/", b"\\/")] = len(form[:prefix].replace(b"/", b"\\/"))
    found = {form.translate(_CANONICAL): (prefix, FRAGMENT) for form, prefix in forms.items()}
    # UTF-16 without the NUL of its last (little-endian) or first (big-endian) ASCII character: the same bytes in
    # either byte order, so what is redacted does not depend on where the text was sampled.
    little, big = (secret.encode(codec, "surrogatepass").translate(_CANONICAL) for codec in ("utf-16-le", "utf-16-be"))
    for form in (little[:-1], big[1:]):  # a JWT's header is ASCII: two bytes a character
        found[form] = (max(0, 2 * public - 1), 2 * FRAGMENT - 1)
    return found


_JWT_HEADER = re.compile(rb"eyJ[\w-]+\.")


_PENDING = -1


def _open_end(text: bytes) -> int:
    """Where the text's end starts to be a separator not yet finished (else its length): a match in progress that
    reaches it is pending, not over."""
    n = len(text)
    floor = max(0, n - _CONTROL_MAX)
    if not text.endswith(b"\\") and text.find(b"\x1b", floor) < 0 and text.find(b"\xc2", floor) < 0:
        return n  # the common case, without a regular expression
    unfinished = _UNFINISHED.search(text, floor)
    return unfinished.start() if unfinished else n


def _walk(text: bytes, at: int, form: bytes, done: int, end: int, final: bool) -> tuple[int, int]:
    """Match form[done:] at text[at:end], skipping separators and, after a line break, what the next line starts with.
    (where the match ends in the text, how much of the form it covers); the end is _PENDING when the text runs out
    mid-form (unless final: then end is the text's length; else the start of an unfinished separator there)."""
    while done < len(form):
        gap = _SEPARATORS.match(text, at, end).end() if at < end else at
        if gap >= end:
            return (at if final else _PENDING), done
        resumed = gap
        if text.find(b"\n", at, gap) >= 0:  # wrapped: the next part is at the line's start, or after its prefix
            resumed = _resume(text, gap, end, form[done:done + _GRAM], final)
            if resumed is None:
                return at, done
            if resumed == _PENDING:
                return _PENDING, done
        same = _common_prefix(text, resumed, form, done, min(end - resumed, len(form) - done))
        if same == 0:
            return at, done
        at, done = resumed + same, done + same  # a separator in the text stops the comparison: the next turn skips it
    return at, done


def _common_prefix(text: bytes, at: int, form: bytes, done: int, size: int) -> int:
    """How many of the next `size` bytes of text and form agree: galloping, then halving, so the work is in
    proportion to the answer, not to `size` (no byte-by-byte loop)."""
    low, step = 0, 16
    while low < size:
        step = min(step, size - low)
        if text[at + low:at + low + step] != form[done + low:done + low + step]:
            break
        low, step = low + step, 2 * step
    else:
        return low
    while step > 1:  # they differ within the next `step` bytes
        half = step // 2
        if text[at + low:at + low + half] == form[done + low:done + low + half]:
            low, step = low + half, step - half
        else:
            step = half
    return low


def _common_suffix(text: bytes, at: int, form: bytes, done: int) -> int:
    """How many bytes before text[at] and form[done] agree, counting back (no separators: a match starts unbroken);
    the work as in _common_prefix."""
    size, low, step = min(at, done), 0, 16
    while low < size:
        step = min(step, size - low)
        if text[at - low - step:at - low] != form[done - low - step:done - low]:
            break
        low, step = low + step, 2 * step
    else:
        return low
    while step > 1:
        half = step // 2
        if text[at - low - half:at - low] == form[done - low - half:done - low]:
            low, step = low + half, step - half
        else:
            step = half
    return low


def _resume(text: bytes, line: int, end: int, needle: bytes, final: bool) -> int | None:
    """Where a secret wrapped onto this line goes on after the line's own start (a log prefix, `b64:`): at a
    word's start, or right after a control sequence, within _DECORATION bytes; _PENDING while that much of the line
    has not arrived; else None."""
    limit = line + _DECORATION + len(needle)
    line_end = text.find(b"\n", line, min(limit, end))
    window = line_end if line_end >= 0 else min(limit, end)
    found = text.find(needle, line, window)
    while found >= 0:
        if found == line or text[found - 1] not in _TOKEN_BYTES or \
                _CONTROL_BEFORE.search(text, max(line, found - _CONTROL_MAX), found):
            return found
        found = text.find(needle, found + 1, window)
    return _PENDING if line_end < 0 and end < limit and not final else None


def _is_continuation(byte: int) -> bool:
    """A UTF-8 continuation byte: no match starts there, so redacting never splits a character."""
    return 0x80 <= byte < 0xC0


class _Matcher:
    """Everything that finds the current secrets and shapes, built once per set of secrets."""

    def __init__(self, secrets: set[str]):
        kinds: dict[bytes, tuple[int, int]] = {}
        for secret in secrets:
            for form, (prefix, fragment) in _encodings(secret).items():
                known = kinds.get(form, (prefix, fragment))
                kinds[form] = (min(known[0], prefix), min(known[1], fragment))
        forms = sorted(kinds, key=lambda f: (b"\x00" in f, -len(f), f))  # UTF-16 last
        self.forms = forms
        self.public = [kinds[form][0] for form in forms]
        self.fragment = [kinds[form][1] for form in forms]
        self.grams: dict[bytes, list[tuple[int, int]]] = {}  # at most _CANDIDATES places each; none for a plain gram
        self.short: list[bytes] = []  # whole secrets too short to hold a fragment: found whole only
        for index, form in enumerate(forms):
            if len(form) < self.fragment[index]:
                self.short.append(form)
                continue
            for offset in range(self.public[index], len(form) - _GRAM + 1):  # a whole JWT is found from its payload
                gram = form[offset:offset + _GRAM]
                places = self.grams.setdefault(gram, [])
                if len(places) < _CANDIDATES and (places or not _plain(gram)):
                    places.append((index, offset))

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
        opened = _open_end(text) if open_from <= n else n
        while at + _GRAM <= n:
            hits = self.grams.get(text[at:at + _GRAM])
            found = [s for index, offset in hits if (s := self._extend(text, at, index, offset, open_from, opened))] \
                if hits else None
            if not found:
                at += _GRAM
                continue
            pending = [span for span in found if span[1] == _PENDING]
            if pending:
                spans.append(min(pending))
                break  # the text from here on is held back
            spans += found  # every place that matched here (overlapping spans are merged)
            at = max(at + _GRAM, *(end for _, end in found))  # past them all: each place's walk forward is paid for
        for form in self.short:  # whole short secrets only, split or not, found through either half
            if b"\x00" in form and b"\x00" not in text:
                break  # the UTF-16 ones, which come last: this text has none
            half = len(form) // 2
            for needle, done in ((form[:half], 0), (form[half:2 * half], half)):
                found = text.find(needle)
                while found >= 0:
                    start = found - _common_suffix(text, found, form, done)  # a split before the second half shows its start
                    while start < found and _is_continuation(text[start]):
                        start += 1
                    if not _is_continuation(text[start]):
                        final = start < open_from
                        end, last = _walk(text, found + len(needle), form, done + len(needle), n if final else opened, final)
                        if end == _PENDING or last == len(form):
                            spans.append((start, end))
                    found = text.find(needle, found + 1)
        return spans

    def _extend(self, text: bytes, at: int, index: int, offset: int, open_from: int, opened: int) -> tuple[int, int] | None:
        """The span of the form's occurrence through the gram at text[at:] (form[offset:]), if it is a whole form or
        at least a fragment of one; its end _PENDING when more text may continue it."""
        form, fragment = self.forms[index], self.fragment[index]
        back = min(_common_suffix(text, at, form, offset), offset - self.public[index])  # a public header stays as it is
        start, first = at - back, offset - back
        while start < at and _is_continuation(text[start]):
            start, first = start + 1, first + 1
        final = start < open_from
        # A match starts only at an unbroken run of a fragment (a shorter first piece of a wrapped secret shows): such
        # a run holds a sampled gram whatever the alignment, so logs and any chunking of a stream agree.
        same = _common_prefix(text, at, form, offset, min(len(text) - at, len(form) - offset))
        unbroken = at - start + same
        if unbroken < fragment and not (first == 0 and unbroken == len(form)):
            return (start, _PENDING) if at + same == len(text) and not final else None
        end, last = _walk(text, at + same, form, offset + same, len(text) if final else opened, final)
        if end == _PENDING:
            return start, _PENDING
        if last - first >= fragment or (first == 0 and last == len(form)):
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
        """Where the text's end may be starting a fragment or a shape's marker, or len(text) when the text is final
        or ends otherwise: its run of token bytes (and `\\`), at most FRAGMENT - 1 of them, or of ASCII characters
        alternating with NULs (UTF-16), at most 2 * FRAGMENT - 1 bytes."""
        n = len(text)
        if open_from > n:
            return n
        start = n
        while start > max(n - (FRAGMENT - 1), open_from, 0) and text[start - 1] in _HELD_BYTES:
            start -= 1
        floor = max(n - (2 * FRAGMENT - 1), open_from, 0)
        wide = _WIDE_TAIL.search(text, floor) if text.find(b"\x00", floor) >= 0 else None
        return min(start, wide.start()) if wide else start


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
