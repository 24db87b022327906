"""The emulator's memory of every secret it issued, and who each access token stands for."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass

from .principals import FederatedPrincipal, ServiceAccountPrincipal

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
CLOUD_PLATFORM_READ_ONLY = "https://www.googleapis.com/auth/cloud-platform.read-only"
IAM_SCOPE = "https://www.googleapis.com/auth/iam"


@dataclass(frozen=True)
class AccessToken:
    """An access token Google would accept as a bearer: federated (STS) or a service account's."""

    token: str
    kind: str  # "federated" | "service_account"
    principal: FederatedPrincipal | ServiceAccountPrincipal
    scopes: tuple[str, ...]
    expiry: float

    def alive(self, now: float) -> bool:
        return now < self.expiry


def new_access_token(prefix: str) -> str:
    """Google access tokens look like ya29.<variant>.<opaque>; the opaque part here is random."""
    return f"{prefix}{secrets.token_urlsafe(96)}"


class TokenStore:
    def __init__(self):
        self._lock = threading.Lock()
        self._access: dict[str, AccessToken] = {}
        self._other: list[str] = []  # ID tokens and registry JWTs

    def add_access(self, record: AccessToken) -> None:
        with self._lock:
            self._access[record.token] = record

    def add_secret(self, token: str) -> None:
        with self._lock:
            self._other.append(token)

    def lookup(self, token: str) -> AccessToken | None:
        with self._lock:
            return self._access.get(token)

    def access_tokens(self) -> list[AccessToken]:
        with self._lock:
            return list(self._access.values())

    def secrets(self) -> list[str]:
        with self._lock:
            return list(self._access) + list(self._other)
