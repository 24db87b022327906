"""Reading what others wrote (servers' bodies and headers, the Docker daemon's messages, a committed config file, a
token's claims) in bounded time and memory: one set of caps, and no parser that can be made to backtrack.

Regular expressions run only over text cut to MAX_TEXT first, or are linear by construction; JSON is parsed only
within MAX_JSON bytes and MAX_DEPTH levels (json.loads recurses once per level)."""

import codecs
import json
import re

MAX_JSON = 64 * 1024  # CHOSEN: Google's and registries' bodies, gcloud's config files and tokens are a few KB
MAX_DEPTH = 16  # CHOSEN: the deepest of them nests 4 levels (google.rpc.Status details)
MAX_TEXT = 8 * 1024  # CHOSEN: what diagnosis reads of an error text: Google's messages are under 1 KB


class NotJson(ValueError):
    """Why a text is not a JSON object within the caps, in the user's terms (never quoting the text)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# A JSON string (possessive, and its closing quote optional, so no input makes it backtrack) or a bracket.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*+"?|[\[\]{}]')


def json_depth(text: str) -> int:
    """How deeply JSON text nests, counted without parsing."""
    depth = deepest = 0
    for token in _JSON_TOKEN.findall(text):
        if token in ("[", "{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in ("]", "}"):
            depth -= 1
    return deepest


def _unique_keys(pairs: list) -> dict:
    """Two values for one key are read differently by different parsers: refuse them."""
    found = dict(pairs)
    if len(found) < len(pairs):
        seen: set = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise NotJson(f"has the field {twice[:80]!r} twice")
    return found


def json_object(data: bytes | str, *, limit: int = MAX_JSON, unique_keys: bool = False, bom: bool = True) -> dict:
    """A JSON object within the caps (UTF-8, a BOM allowed unless `bom` is False), or NotJson saying why not."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if len(data) > limit:
        raise NotJson(f"is more than {limit // 1024} KB")
    if not bom and data.startswith(codecs.BOM_UTF8):
        raise NotJson("starts with a byte order mark")
    data = data.removeprefix(codecs.BOM_UTF8)  # Windows editors write one; RFC 8259 §8.1 lets parsers ignore it
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or data[:2].count(0) == 1:
        raise NotJson("is UTF-16 text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise NotJson("is not UTF-8 text") from None
    if json_depth(text) > MAX_DEPTH:
        raise NotJson(f"nests JSON more than {MAX_DEPTH} levels deep")
    try:
        parsed = json.loads(text, object_pairs_hook=_unique_keys if unique_keys else None)
    except NotJson:
        raise
    except json.JSONDecodeError as error:  # the position only: never the content
        raise NotJson(f"is not valid JSON (line {error.lineno}, column {error.colno})") from None
    except (ValueError, RecursionError):  # huge integers (more than 4300 digits), and nothing else gets here
        raise NotJson("is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise NotJson("is JSON but not an object")
    return parsed


def json_or_none(data: bytes | str | None) -> dict | None:
    """A server's body as a JSON object, or None when it is anything else."""
    try:
        return json_object(data or b"")
    except NotJson:
        return None


def text(data: bytes | str | None, limit: int = MAX_TEXT) -> str:
    """A server's text for reading: decoded (undecodable bytes replaced) and cut to `limit` characters."""
    if data is None:
        return ""
    if isinstance(data, bytes):
        data = data[: limit * 4].decode("utf-8", "replace")
    return data[:limit]


_WEB_PAGE = re.compile(r"<(?:!doctype html|html)\b", re.I)


def is_web_page(text: str) -> bool:
    """HTML where an API's JSON or a registry's error should be: a front end's, a proxy's or a captive portal's page."""
    return bool(_WEB_PAGE.search(text))
