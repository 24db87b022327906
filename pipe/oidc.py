"""The step's OIDC token: where it comes from and what it claims (read locally, never printed)."""

import base64
import binascii
import json
import math
import re
import time
from dataclasses import dataclass, field

from pipe import parsers
from pipe.errors import PipeError

MISSING = (
    "This step has no OIDC token (BITBUCKET_STEP_OIDC_TOKEN is empty): add `oidc: true` to the step "
    "in bitbucket-pipelines.yml. Steps run for pull requests from forks never receive one."
)
# CHOSEN: Bitbucket's tokens are a few KB (at most 10 custom audiences of 150 characters); this bounds the decoding work.
MAX_TOKEN = 64 * 1024
MAX_DEPTH = 16  # CHOSEN: Bitbucket's claims nest 2 levels (a list of audiences)
CLAIM_LIMIT = 256  # characters of a claim shown in a message (a workspace's issuer URL is well under it)
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
        return [parsers.printable(a, CLAIM_LIMIT) for a in values if isinstance(a, str) and a]

    def claim(self, name: str) -> str:
        """One claim for a message: printable, bounded, never raising whatever the token holds."""
        if name not in self.claims:
            return "(not in the token)"
        value = self.claims[name]
        if isinstance(value, str):
            return parsers.printable(value, CLAIM_LIMIT)
        if isinstance(value, bool) or value is None:
            return json.dumps(value)
        if isinstance(value, (int, float)):
            return parsers.printable(repr(value), CLAIM_LIMIT)  # json already refused integers too long to print
        return f"(a JSON {'list' if isinstance(value, list) else 'object'})"


def _refuse(source: str, problem: str) -> PipeError:
    return PipeError(f"{source} {problem} (value hidden): pass Bitbucket's $BITBUCKET_STEP_OIDC_TOKEN unchanged.")


def decode_claims(token: str, source: str = "BITBUCKET_STEP_OIDC_TOKEN") -> dict:
    """The JWT payload, decoded without verification (Google verifies it)."""
    if len(token) > MAX_TOKEN:
        raise _refuse(source, f"is {len(token)} characters long, far more than a JWT from Bitbucket ever is")
    match = _JWT_RE.fullmatch(token)
    try:
        text = base64.urlsafe_b64decode(match["payload"] + "=" * (-len(match["payload"]) % 4)).decode() if match else ""
        claims = json.loads(text) if parsers.json_depth(text) <= MAX_DEPTH else None
    except (ValueError, binascii.Error, UnicodeDecodeError):
        claims = None
    if not isinstance(claims, dict):
        raise _refuse(source, "is not a JWT")
    return claims


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
