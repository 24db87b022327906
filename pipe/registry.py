"""Which registries may receive a Google access token, and the credentials handed to the daemon.

The daemon does not send registry credentials to the registry host: it sends them to the token service
its `/v2/` challenge names (`WWW-Authenticate: Bearer realm=...`). So both the registry and that token
service must be hosts the token may go to, checked before any token exists, with one URL reading (pipe.urls).
"""

import re
from dataclasses import dataclass

from google.auth import exceptions

from pipe import parsers, redact, urls
from pipe.errors import PipeError
from pipe.parsers import Image

GOOGLE_REGISTRY_SUFFIXES = (".pkg.dev", ".gcr.io")  # *-docker.pkg.dev, *.pkg.dev, us.gcr.io, ...
GOOGLE_REGISTRY_HOSTS = ("gcr.io",)
_BEARER_RE = re.compile(r"\s*bearer\s+(?P<params>.*)", re.IGNORECASE | re.DOTALL)
_PARAM_RE = re.compile(r'\s*(\w+)="([^"]*)"\s*(?:,|$)')


def is_google(host: str) -> bool:
    name = host.lower()
    # A port means it is not Google's public endpoint (which is :443 only).
    return ":" not in name and (name in GOOGLE_REGISTRY_HOSTS or name.endswith(GOOGLE_REGISTRY_SUFFIXES))


def is_allowed(netloc: str, extra_registries: tuple[str, ...]) -> bool:
    return is_google(netloc) or netloc in extra_registries


def check_allowed(image: Image, extra_registries: tuple[str, ...]) -> None:
    """Refuse before any token exists to leak: only Google's registries and the user's REGISTRIES."""
    if is_allowed(image.host, extra_registries):
        return
    raise PipeError(
        f"IMAGE {image.reference} is on {image.host}, which is not a Google registry, so the pipe will not send it "
        f"a Google access token: use an Artifact Registry image, or add '{image.host}' to REGISTRIES if that host "
        "really accepts Google tokens."
    )


@dataclass(frozen=True)
class TokenService:
    realm: str | None  # None: the registry asks for no token service (credentials, if any, go to the registry itself)
    service: str | None


def registry_url(host: str) -> str:
    """Where the daemon reaches a registry: https, or plain http for loopback (Docker's insecure default)."""
    parsed = urls.parse(f"http://{host}/v2/")
    scheme = "http" if parsed and urls.is_loopback(parsed.host) else "https"
    return f"{scheme}://{host}/v2/"


def check_token_service(host: str, extra_registries: tuple[str, ...], transport) -> TokenService:
    """Read the registry's challenge anonymously (no token exists yet) and refuse a token service the
    token may not go to. Shared by pull, run and doctor."""
    url = registry_url(host)
    try:
        response = transport(url, method="GET")
    except exceptions.TransportError as error:
        raise PipeError(
            f"Could not reach {url} to check where it sends registry credentials ({redact.redact(str(error))}): "
            "check IMAGE and the step's network access."
        ) from None
    challenge = _bearer(response.headers.get("WWW-Authenticate") or "")
    if response.status != 401 or challenge is None:
        return TokenService(None, None)  # no token service: the daemon sends credentials nowhere but the registry
    realm_text = challenge.get("realm", "")
    realm = urls.parse(realm_text)
    shown = realm.netloc if realm else parsers.echo(realm_text)
    if realm is None or not urls.may_carry_tokens(realm) or not is_allowed(realm.netloc, extra_registries):
        raise PipeError(
            f"{host} sends registry credentials to the token service {shown}, which may not receive Google tokens: "
            f"add '{realm.netloc}' to REGISTRIES only if you trust that host."
            if realm and urls.may_carry_tokens(realm) else
            f"{host} sends registry credentials to the token service {shown}, which the pipe will not send a token to "
            "(only https, or plain http on localhost, in a plain URL form): REGISTRIES cannot allow it."
        )
    return TokenService(str(realm), challenge.get("service"))


def _bearer(header: str) -> dict | None:
    match = _BEARER_RE.match(header)
    return dict(_PARAM_RE.findall(match["params"])) if match else None


def auth_config(access_token: str) -> dict:
    """Per-pull credentials for the daemon (Artifact Registry's documented user name); never written to disk."""
    return {"username": "oauth2accesstoken", "password": access_token}
