"""Registry authentication: which registries may receive a Google access token, where a registry sends clients for
credentials (its token service, named by its `/v2/` challenge), and the pull-scoped registry token the pipe gets
there itself. That registry token is the only credential the Docker daemon ever receives: with it the daemon pulls
without contacting any token service, so the Google access token reaches no host the pipe did not check, whatever the
registry answers the daemon later.
"""

import base64
from dataclasses import dataclass
from urllib.parse import urlencode

from google.auth import exceptions

from pipe import answers, diagnose_registry, google_registries, shown, untrusted, urls
from pipe.errors import PipeError
from pipe.parsers import Image

MAX_CHALLENGE = 4096  # CHOSEN: Artifact Registry's challenge is under 200 characters
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_MANIFESTS = ", ".join((
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.docker.distribution.manifest.v2+json",
))


def is_allowed(netloc: str, extra_registries: tuple[str, ...]) -> bool:
    return google_registries.is_google(netloc) or netloc in extra_registries


def check_allowed(image: Image, extra_registries: tuple[str, ...]) -> None:
    """Refuse before any token exists to leak: only Google's registries and the user's REGISTRIES."""
    if is_allowed(image.host, extra_registries):
        return
    raise PipeError(
        f"IMAGE is on {shown.clipped(image.host)}{google_registries.mistyped(image.host)}, which is not a Google registry, so "
        "the pipe will not send it a Google "
        f"access token: use an Artifact Registry image, or add '{shown.clipped(image.host)}' to REGISTRIES if that host "
        "really accepts Google tokens."
    )


def receiving_credentials(image: Image | None, action: str, export: bool, extra_registries: tuple[str, ...]) -> list[str]:
    """The registries that will get credentials: IMAGE's for pull and run (a registry token) and for an export (the
    docker config), and for an export every REGISTRIES host too (Google's own hosts need no check)."""
    hosts = [image.host] if image and (action in ("pull", "run") or export) else []
    if export:
        hosts += [host for host in extra_registries if host not in hosts]
    return hosts


# --- the challenge --------------------------------------------------------------------------------

def challenges(header: str) -> list[tuple[str, dict[str, str]]]:
    """RFC 7235 challenges: scheme and parameter names case-insensitive, the first value of a repeated parameter kept
    (a challenge that repeats one is refused by token_service: Docker keeps the last)."""
    return [(scheme, dict(reversed(pairs))) for scheme, pairs in _challenge_pairs(header)]


def ambiguous(header: str) -> str | None:
    """What clients could read two ways, else None: a parameter given twice with different values (the pipe would take
    the first, Docker takes the last), or Bearer challenges naming different token services (which one a client uses
    depends on how it splits header lines)."""
    bearers = []
    for scheme, pairs in _challenge_pairs(header):
        values: dict[str, str] = {}
        for name, value in pairs:
            if values.setdefault(name, value) != value:
                return f"its challenge gives {name} twice"
        if scheme == "bearer":
            bearers.append(values)
    if len({(b.get("realm"), b.get("service")) for b in bearers}) > 1:
        return "it names several token services"
    return None


def _challenge_pairs(header: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """Each challenge's scheme and its parameters in order. One pass over at most MAX_CHALLENGE characters."""
    text = header[:MAX_CHALLENGE]
    n, found, current, i = len(text), [], None, 0

    def token(at: int) -> int:
        while at < n and text[at] in _TCHAR:
            at += 1
        return at

    def spaces(at: int) -> int:
        while at < n and text[at] in " \t":
            at += 1
        return at

    while i < n:
        while i < n and text[i] in " \t,":
            i += 1
        start, i = i, token(i)
        if i == start:  # a character no scheme or name has: skip it, so any text ends
            i += 1
            continue
        word, after = text[start:i].lower(), spaces(i)
        if current is not None and after < n and text[after] == "=" and text[after + 1:after + 2] != "=":
            value_at = spaces(after + 1)
            if value_at < n and text[value_at] == '"':
                value, i = _quoted(text, value_at + 1)
            else:
                i = token(value_at)
                value = text[value_at:i]
            current.append((word, value))  # a parameter of the current challenge
        else:  # a new challenge's scheme (a token68 after a scheme reads as a scheme of its own: harmless)
            current = []
            found.append((word, current))
            i = after
    return found


def _quoted(text: str, at: int) -> tuple[str, int]:
    """A quoted-string's content as written, from just after its opening quote, and where it ends (an unclosed one
    ends the text). Escapes are kept, not read: no real token service writes one, and a realm with a backslash is
    then refused by pipe.urls rather than read one way here and another elsewhere."""
    end = at
    while end < len(text) and text[end] != '"':
        end += 2 if text[end] == "\\" else 1
    return text[at:min(end, len(text))], min(end + 1, len(text))


@dataclass(frozen=True)
class TokenService:
    """Where a registry sends clients for credentials. realm None: it asks for none (an open registry)."""

    host: str  # the registry
    realm: urls.Url | None
    service: str | None


def registry_url(host: str) -> str:
    """Where the daemon reaches a registry: https, or plain http for loopback (Docker's insecure default)."""
    parsed = urls.parse(f"http://{host}/v2/")
    scheme = "http" if parsed and urls.is_loopback(parsed.host) else "https"
    return f"{scheme}://{host}/v2/"


def token_service(host: str, extra_registries: tuple[str, ...], transport, pull: bool = True) -> TokenService:
    """Read the registry's challenge anonymously (no token exists yet) and refuse a token service the token may not
    go to. Shared by pull, run, the exported docker config and the doctor. For a pull the registry must name a token
    service (or need no credentials); for an exported docker config a host without one gets the credentials itself."""
    url = registry_url(host)
    answer = _get(transport, url, f"check where {host} sends registry credentials")
    if answer.status == 200:
        return TokenService(host, None, None)  # an open registry: it needs no credentials
    header = answer.headers.get("WWW-Authenticate") or ""  # several header lines arrive joined by ", "
    if problem := ambiguous(header):
        raise PipeError(f"{host} answered with a challenge clients read differently ({problem}): the pipe sends no token "
                        "where it cannot tell which token service the Docker daemon or CLI would use; check IMAGE and REGISTRIES.")
    bearer = next((params for scheme, params in challenges(header) if scheme == "bearer"), None)
    if bearer is None and not pull:
        return TokenService(host, None, None)  # the docker CLI sends the exported credentials to this listed host only
    if answer.status != 401 or bearer is None:
        said = f"HTTP {answer.status}" + ("" if answer.status != 401 else " with no token service in its challenge")
        raise PipeError(
            f"{host} answered {said} at {url}: the pipe only gives the Docker daemon a registry token from the registry's "
            "token service (Docker's token authentication, as Artifact Registry uses), never the Google access token; "
            "check IMAGE and REGISTRIES."
        )
    realm_text = bearer.get("realm", "")
    realm = urls.parse(realm_text)
    where = realm.netloc if realm else shown.echo(realm_text)
    if realm is None or not urls.may_carry_tokens(realm):
        raise PipeError(
            f"{host} sends registry credentials to the token service {where}, which the pipe will not send a token to "
            "(only https, or plain http on localhost, in a plain URL form): REGISTRIES cannot allow it."
        )
    if not is_allowed(realm.netloc, extra_registries):
        raise PipeError(
            f"{host} sends registry credentials to the token service {where}, which may not receive Google tokens: "
            f"add '{realm.netloc}' to REGISTRIES only if you trust that host."
        )
    return TokenService(host, realm, bearer.get("service"))


# --- the registry token ---------------------------------------------------------------------------

def pull_token(image: Image, service: TokenService, access_token: str, principal: str, transport) -> str | None:
    """A registry token for pulling IMAGE's repository, from the token service `service` names (checked by
    token_service); None for an open registry. Refusals are explained (pipe.diagnose_registry)."""
    if service.realm is None:
        return None
    query = urlencode([(name, value) for name, value in (("service", service.service), ("scope", f"repository:{image.path}:pull")) if value])
    url = f"{service.realm}{'&' if service.realm.query is not None else '?'}{query}"
    basic = f"{google_registries.USERNAME}:{access_token}".encode()
    answer = _get(transport, url, f"get a pull token from {service.realm.netloc}",
                  {"Authorization": "Basic " + base64.b64encode(basic).decode()})
    if answer.status != 200:
        raise PipeError(diagnose_registry.token_service_error(answer.status, untrusted.text(answer.data), image, principal, service.realm.netloc))
    fix = f"check that {service.realm.netloc} is the registry's token service (REGISTRIES)"
    token = answers.registry_token(answer.data, f"The token service {service.realm.netloc}", fix)
    if access_token in token:  # the Google token handed back would reach the daemon, and whatever the registry names
        raise PipeError(f"The token service {service.realm.netloc} answered with the Google access token itself as the "
                        f"registry token, which no token service does and the Docker daemon must never receive: {fix}.")
    return token


def daemon_auth(registry_token: str | None) -> dict:
    """The Engine API's auth config for one pull: the registry token only (the daemon sends it to the registry as a
    bearer token and asks no token service), or an empty one for an open registry (never the SDK's own lookup of a
    docker config file)."""
    return {"registrytoken": registry_token} if registry_token else {}


def manifest(image: Image, registry_token: str | None, transport) -> int:
    """The HTTP status of IMAGE's manifest, read with the registry token (the doctor's check that the pull would work)."""
    reference = image.digest or image.tag or "latest"
    url = f"{registry_url(image.host).removesuffix('/v2/')}/v2/{image.path}/manifests/{reference}"
    headers = {"Accept": _MANIFESTS} | ({"Authorization": f"Bearer {registry_token}"} if registry_token else {})
    return _get(transport, url, f"read {image.display}'s manifest", headers, method="HEAD").status


def _get(transport, url: str, purpose: str, headers: dict | None = None, method: str = "GET"):
    try:
        return transport(url, method=method, headers=headers or {})
    except exceptions.TransportError as error:
        slip = google_registries.mistyped(parsed.host) if (parsed := urls.parse(url)) else ""
        raise PipeError(f"Could not reach {url.split('?')[0]} to {purpose} ({error}): check IMAGE{slip} and the step's network access.") from None
