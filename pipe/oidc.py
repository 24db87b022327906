"""The step's OIDC token: where it comes from and what it claims (read locally, never printed)."""

import base64
import binascii
import math
import re
import time
from dataclasses import dataclass, field

from pipe import shown, untrusted
from pipe.errors import PipeError

MISSING = (
    "This step has no OIDC token (BITBUCKET_STEP_OIDC_TOKEN is empty): add `oidc: true` to the step "
    "in bitbucket-pipelines.yml. Steps run for pull requests from forks never receive one."
)
# Bitbucket's tokens are a few KB (at most 10 custom audiences of 150 characters); this bounds the decoding work.
MAX_TOKEN = untrusted.MAX_JSON
# Compact JWS: three base64url segments (the signature may be empty), nothing else.
_JWT_RE = re.compile(r"[A-Za-z0-9_-]+=*\.(?P<payload>[A-Za-z0-9_-]+)=*\.[A-Za-z0-9_-]*=*")


@dataclass(frozen=True)
class StepToken:
    value: str = field(repr=False)
    claims: dict

    @property
    def audiences(self) -> list[str]:
        """The aud claim as printable strings (read() refuses any other shape; this never raises)."""
        aud = self.claims.get("aud")
        values = aud if isinstance(aud, list) else [aud]
        return [shown.claim(a) for a in values if isinstance(a, str) and a]

    @property
    def lifetime(self) -> str:
        """exp - iat, for the DEBUG log."""
        exp, iat = self.claims.get("exp"), self.claims.get("iat")
        if not isinstance(exp, int) or not isinstance(iat, int) or isinstance(exp, bool) or isinstance(iat, bool):
            return "unknown"
        return shown.claim(exp - iat) + "s"  # bounded, and never Python's int-to-text limit

    def claim(self, name: str) -> str:
        """One claim for a message: printable, bounded, never raising whatever the token holds."""
        return shown.claim(self.claims[name]) if name in self.claims else "(not in the token)"


def _refuse(source: str, problem: str) -> PipeError:
    return PipeError(f"{source} {problem} (value hidden): pass Bitbucket's $BITBUCKET_STEP_OIDC_TOKEN unchanged.")


def decode_claims(token: str, source: str = "BITBUCKET_STEP_OIDC_TOKEN") -> dict:
    """The JWT payload, decoded without verification (Google verifies it)."""
    if len(token) > MAX_TOKEN:
        raise _refuse(source, f"is {len(token)} characters long, far more than a JWT from Bitbucket ever is")
    match = _JWT_RE.fullmatch(token)
    try:
        payload = base64.urlsafe_b64decode(match["payload"] + "=" * (-len(match["payload"]) % 4)) if match else b""
        return untrusted.json_object(payload)
    except (untrusted.NotJson, binascii.Error, ValueError):
        raise _refuse(source, "is not a JWT") from None


def _seconds(value) -> float | None:
    """A numeric claim as a float (±inf beyond a float's range), None when absent, NaN when not a number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    try:
        return float(value)
    except OverflowError:  # an integer of hundreds of digits
        return math.inf if value > 0 else -math.inf


def read(env: dict, now: float | None = None) -> StepToken:
    source = "OIDC_TOKEN" if (env.get("OIDC_TOKEN") or "").strip() else "BITBUCKET_STEP_OIDC_TOKEN"
    value = (env.get(source) or "").strip()
    if not value:
        raise PipeError(MISSING)
    token = StepToken(value, decode_claims(value, source))
    aud = token.claims.get("aud")
    if aud is not None and not isinstance(aud, str) and not (isinstance(aud, list) and all(isinstance(a, str) for a in aud)):
        raise _refuse(source, "has an aud claim that is neither a string nor a list of strings")
    strings = [v for v in token.claims.values() if isinstance(v, str)] + (aud if isinstance(aud, list) else [])
    if not all(text.isprintable() for text in strings):  # claims are printed by setup, doctor and diagnosis
        raise _refuse(source, "has a claim with control or invisible characters, which Bitbucket never writes")
    exp = _seconds(token.claims.get("exp"))
    if exp is not None and not exp < math.inf:  # NaN, or a time no clock reaches
        raise _refuse(source, "has an exp claim that is not a time in seconds")
    now = time.time() if now is None else now
    if exp is not None and exp < now:
        ago = f"{int(now - exp)} s ago" if math.isfinite(exp) else "long ago"
        raise PipeError(
            f"The step's OIDC token ({source}) expired {ago}: Bitbucket's token lasts about an hour from the "
            "start of the step, so run this pipe earlier in the step or move later work to its own step with `oidc: true`."
        )
    return token
