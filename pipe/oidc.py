"""The step's OIDC token: where it comes from and what it claims (read locally, never printed)."""

import base64
import binascii
import json
import math
import time
from dataclasses import dataclass, field

from pipe.errors import PipeError

MISSING = (
    "This step has no OIDC token (BITBUCKET_STEP_OIDC_TOKEN is empty): add `oidc: true` to the step "
    "in bitbucket-pipelines.yml. Steps run for pull requests from forks never receive one."
)


@dataclass(frozen=True)
class StepToken:
    value: str = field(repr=False)
    claims: dict

    @property
    def audiences(self) -> list[str]:
        aud = self.claims.get("aud")
        return aud if isinstance(aud, list) else [aud] if aud else []

    def claim(self, name: str) -> str:
        return str(self.claims.get(name, "(not in the token)"))


def decode_claims(token: str, source: str = "BITBUCKET_STEP_OIDC_TOKEN") -> dict:
    """The JWT payload, decoded without verification (Google verifies it)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error, UnicodeDecodeError):
        claims = None
    if not isinstance(claims, dict):
        raise PipeError(f"{source} is not a JWT (value hidden): pass Bitbucket's $BITBUCKET_STEP_OIDC_TOKEN unchanged.")
    return claims


def read(env: dict, now: float | None = None) -> StepToken:
    source = "OIDC_TOKEN" if (env.get("OIDC_TOKEN") or "").strip() else "BITBUCKET_STEP_OIDC_TOKEN"
    value = (env.get(source) or "").strip()
    if not value:
        raise PipeError(MISSING)
    token = StepToken(value, decode_claims(value, source))
    exp = token.claims.get("exp")
    now = time.time() if now is None else now
    if isinstance(exp, (int, float)) and not isinstance(exp, bool) and exp < now:
        ago = f"{int(now - exp)} s ago" if math.isfinite(exp) else "long ago"
        raise PipeError(
            f"The step's OIDC token ({source}) expired {ago}: Bitbucket's token lasts about an hour from the "
            "start of the step, so run this pipe earlier in the step or move later work to its own step with `oidc: true`."
        )
    return token
