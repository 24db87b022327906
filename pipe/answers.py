"""The success answers the pipe accepts, field by field: Google STS, IAM Credentials and a registry's token service.

A 200 whose body is not what the service documents (a field missing, of the wrong type, not text, a token that is
not one, an expiry in the past or absurdly far) is refused in one line naming the service and the field, before
google-auth or the Docker daemon reads it.
"""

import re
from datetime import UTC, datetime, timedelta

from pipe import shown, untrusted
from pipe.errors import PipeError

MAX_TOKEN = 16 * 1024  # CHOSEN: Google's access tokens are ~2 KB, ID tokens and registry tokens a few KB
# CHOSEN: Google's access tokens are over 100 characters, JWTs and Artifact Registry's tokens far longer. A shorter
# "token" could be an ordinary word, which redaction would then cut out of every line, the pipe's own included.
MIN_TOKEN = 32
MAX_LIFETIME = 12 * 3600  # the longest lifetime Google grants (registry tokens: Artifact Registry's 12 h)
_TOKEN = re.compile(r"[!-~]+")  # printable ASCII without spaces: what an Authorization header can carry
_EXPIRE_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")  # google-auth parses only this form
_SLACK = 300  # seconds of clock difference tolerated


def _refuse(service: str, field: str, problem: str, fix: str) -> PipeError:
    return PipeError(f"{service} answered HTTP 200, but {problem} ({field}), which it never does: {fix}.")


def body(service: str, data: bytes, fix: str) -> dict:
    """The answer as its reader reads it: google-auth decodes UTF-8 and parses JSON with no byte order mark allowed, so
    a check that skipped one would pass a body google-auth then fails on."""
    try:
        return untrusted.json_object(data, bom=False)
    except untrusted.NotJson as error:
        if untrusted.is_web_page(untrusted.text(data, 2048)):  # a login or block page in the API's place: a proxy or captive portal's
            raise PipeError(f"{service} answered HTTP 200 with a web page, not its answer: something between the step and "
                            "it (a proxy or a captive portal asking for a login) answered in its place; check HTTPS_PROXY "
                            "and NO_PROXY, and that the runner's network reaches the host directly.") from None
        raise _refuse(service, "the body", f"its body {error.reason}", fix) from None



def _wrong_type(answer: dict, field: str, wanted: str) -> str:
    """What is wrong with a field of the wrong type, the one wording every check uses: missing (absent or null, which
    Google's JSON mapping reads alike), or what it is instead (true and false as JSON writes them)."""
    value = answer.get(field)
    if value is None:
        return f"its {field} is missing"
    if isinstance(value, bool):
        return f"its {field} is {shown.claim(value)}, not {wanted}"
    kind = {str: "a string", int: "a number", float: "a number", list: "a list", dict: "an object"}
    return f"its {field} is {kind.get(type(value), 'a value')}, not {wanted}"


def token(answer: dict, field: str, service: str, fix: str) -> str:
    value = answer.get(field)
    if not isinstance(value, str):
        raise _refuse(service, field, _wrong_type(answer, field, "a string"), fix)
    if not MIN_TOKEN <= len(value) <= MAX_TOKEN or not _TOKEN.fullmatch(value):
        raise _refuse(service, field, f"its {field} is not a token ({len(value)} characters, or not printable ASCII)", fix)
    return value


def seconds(answer: dict, field: str, service: str, fix: str, required: bool = True) -> int | None:
    value = answer.get(field)
    if value is None and not required:
        return None
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,6}", value):  # OAuth allows the number as a string
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _refuse(service, field, _wrong_type(answer, field, "a number of seconds"), fix)
    if not 0 < value <= MAX_LIFETIME:
        raise _refuse(service, field, f"its {field} is {shown.claim(value)} s, outside 1 s to {MAX_LIFETIME // 3600} h", fix)
    return value


def expire_time(answer: dict, field: str, service: str, fix: str, now: datetime | None = None) -> datetime:
    value = answer.get(field)
    if not isinstance(value, str):
        raise _refuse(service, field, _wrong_type(answer, field, "a time"), fix)
    if not _EXPIRE_TIME.fullmatch(value):
        raise _refuse(service, field, f"its {field} is not a time like 2026-01-31T12:00:00Z", fix)
    try:
        when = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise _refuse(service, field, f"its {field} is not a calendar time", fix) from None
    now = now or datetime.now(UTC)
    if not now - timedelta(seconds=_SLACK) < when <= now + timedelta(seconds=MAX_LIFETIME + _SLACK):
        raise _refuse(service, field, f"its {field} {shown.clipped(value)} is in the past or more than 12 hours ahead", fix)
    return when


# --- each service's success answer ---------------------------------------------------------------------

STS = "Google STS"
IAM = "IAM Credentials"
STS_FIX = "STS_ENDPOINT must be Google's Security Token Service"
IAM_FIX = "IAM_CREDENTIALS_ENDPOINT must be Google's IAM Credentials API"


def check_sts(data: bytes) -> None:
    """RFC 8693's answer as Google sends it: access_token, token_type, expires_in (google-auth needs all three)."""
    answer = body(STS, data, STS_FIX)
    token(answer, "access_token", STS, STS_FIX)
    seconds(answer, "expires_in", STS, STS_FIX)
    for field in ("token_type", "issued_token_type"):
        if answer.get(field) is not None and not isinstance(answer[field], str):
            raise _refuse(STS, field, _wrong_type(answer, field, "a string"), STS_FIX)


def check_access_token(data: bytes, method: str = "generateAccessToken") -> None:
    answer = body(f"{IAM} {method}", data, IAM_FIX)
    token(answer, "accessToken", f"{IAM} {method}", IAM_FIX)
    expire_time(answer, "expireTime", f"{IAM} {method}", IAM_FIX)


def id_token(data: bytes) -> str:
    """generateIdToken's {"token": "<JWT>"}."""
    service = f"{IAM} generateIdToken"
    value = token(body(service, data, IAM_FIX), "token", service, IAM_FIX)
    if value.count(".") != 2:
        raise _refuse(service, "token", "its token is not a JWT", IAM_FIX)
    return value


def registry_token(data: bytes, service: str, fix: str) -> str:
    """A token service's answer (Docker's token authentication): `token`, or OAuth's `access_token`, and an optional
    `expires_in`. Docker reads `token` first, and so does the pipe."""
    answer = body(service, data, fix)
    field = "token" if "token" in answer else "access_token"
    value = token(answer, field, service, fix)
    seconds(answer, "expires_in", service, fix, required=False)
    return value
