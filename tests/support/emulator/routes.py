"""Which Google endpoint a request is for, and the call into that endpoint's module."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from . import iam, realm, sts
from .replies import Reply, StsError, not_found_page

_OIDC = re.compile(r"^/bitbucket/([^/]+)/(\.well-known/openid-configuration|keys\.json)$")


@dataclass
class Incoming:
    method: str
    path: str  # percent-decoded, without the query
    query: dict[str, list[str]]
    headers: dict[str, str]
    raw: bytes = b""
    body: dict = field(default_factory=dict)
    base_url: str = ""  # the listener this came through (loopback http, or the TLS one on the bridge)

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


def classify(method: str, path: str) -> str | None:
    """The route name used by the request log and by fault injection."""
    if path.startswith("/_emulator/"):
        return "control"
    if method == "GET" and _OIDC.match(path):
        return "oidc"
    if method == "GET" and path == "/oauth2/v3/certs":
        return "certs"
    if method == "POST" and path == "/v1/token":
        return "sts"
    if method == "POST" and path == "/v1/introspect":
        return "introspect"
    if method == "POST" and iam.PATH.match(path):
        return "iam"
    if method == "GET" and path == "/v2/token":
        return "realm"
    return None


def parse_for_log(route: str | None, incoming: Incoming) -> dict:
    """The body as the endpoint understands it; unparsable bodies log as {}."""
    if route == "sts":
        try:
            return sts.parse_body(incoming.header("Content-Type") or "", incoming.raw)
        except StsError:
            return {}
    if route == "introspect":
        try:
            params = sts.parse_body(incoming.header("Content-Type") or "", incoming.raw)
        except StsError:
            return {}
        return {k: ("<redacted>" if k == "token" else v) for k, v in params.items()}
    if route == "iam":
        try:
            body = json.loads(incoming.raw or b"{}")
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}
    return {}


def dispatch(emu, route: str | None, incoming: Incoming) -> Reply:
    now = emu.clock()
    world = emu.world
    if route == "oidc":
        return _oidc(emu, incoming.path)
    if route == "certs":
        return Reply(200, {"keys": [emu.google_jwk()]})
    if route == "sts":
        try:
            params = sts.parse_body(incoming.header("Content-Type") or "", incoming.raw)
        except StsError as exc:
            return exc.reply()
        return sts.exchange(world, emu.tokens, params, now)
    if route == "introspect":
        try:
            params = sts.parse_body(incoming.header("Content-Type") or "", incoming.raw)
        except StsError as exc:
            return exc.reply()
        return sts.introspect(emu.tokens, params, now)
    if route == "iam":
        account, method = iam.PATH.match(incoming.path).groups()
        return iam.handle(world, emu.tokens, emu.google_signer, method, account,
                          incoming.header("Authorization"), incoming.raw, now)
    if route == "realm":
        return realm.handle(world, emu.tokens, emu.registry_signer, incoming.query,
                            incoming.header("Authorization"), now, f"{incoming.base_url or emu.url}/v2/token")
    return not_found_page(incoming.path)


def _oidc(emu, path: str) -> Reply:
    slug, document = _OIDC.match(path).groups()
    try:
        issuer = emu.world.issuer(slug)
    except KeyError:
        return Reply(404, {"type": "error", "error": {"message": "Resource not found"}})
    if document == "keys.json":
        return Reply(200, issuer.jwks())
    return Reply(200, issuer.discovery(jwks_uri=f"{emu.url}/bitbucket/{slug}/keys.json"))


def control(emu, incoming: Incoming) -> Reply:
    """Test-only routes for the emulator run as a separate process."""
    path, method = incoming.path, incoming.method
    try:
        data = json.loads(incoming.raw or b"{}")
    except ValueError:
        return Reply(400, {"error": "body must be JSON"})
    if method == "POST" and path == "/_emulator/mint":
        return _control_mint(emu, data)
    if method == "GET" and path == "/_emulator/requests":
        return Reply(200, {"requests": [r.as_dict() for r in emu.requests]})
    if method == "POST" and path == "/_emulator/faults":
        if data.get("clear"):
            emu.faults.clear()
        else:
            try:
                emu.faults.inject(**data)
            except (TypeError, ValueError) as exc:
                return Reply(400, {"error": str(exc)})
        return Reply(200, {})
    if method == "POST" and path == "/_emulator/reset_log":
        emu.reset_log()
        return Reply(200, {})
    if method == "GET" and path == "/_emulator/labels":
        return Reply(200, dict(emu.world.labels))
    if method == "GET" and path == "/_emulator/issued_tokens":
        return Reply(200, {"tokens": emu.issued_tokens()})
    return Reply(404, {"error": "unknown control route"})


def _control_mint(emu, data: dict) -> Reply:
    kwargs = dict(data)
    slug = kwargs.pop("workspace_slug", None)
    repository_uuid = kwargs.pop("repository_uuid", emu.world.labels.get("repository_uuid"))
    if not repository_uuid:
        return Reply(400, {"error": "repository_uuid is required"})
    kwargs.setdefault("iat", int(emu.clock()))
    try:
        token = emu.world.issuer(slug).mint(repository_uuid, **kwargs)
    except (KeyError, TypeError) as exc:
        return Reply(400, {"error": f"cannot mint: {exc}"})
    return Reply(200, {"token": token})
