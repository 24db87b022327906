"""What counts as transient, and how often and how long to try again: one answer for Google's calls, the registry's
token service and the Docker daemon's pulls, and for diagnosis when the budget runs out.

A failure is transient when trying again later can succeed without anyone changing anything: the server was busy
(429, RESOURCE_EXHAUSTED, `toomanyrequests`), unavailable (408, 500, 502, 503, 504, UNAVAILABLE), or the network
dropped the exchange (resets, timeouts, an EOF mid-answer). Everything else is the caller's to explain at once.
"""

import logging
import random
import re
import time
from dataclasses import dataclass

from pipe import untrusted

log = logging.getLogger("pipe")

THROTTLED, UNAVAILABLE, NETWORK = "throttled", "unavailable", "network"  # the kinds of transient failure
_STATUS_KIND = {408: UNAVAILABLE, 429: THROTTLED, 500: UNAVAILABLE, 502: UNAVAILABLE, 503: UNAVAILABLE, 504: UNAVAILABLE}
TRANSIENT_STATUS = frozenset(_STATUS_KIND)
# google.rpc.Code names and OAuth error codes Google uses for the same situations.
_GOOGLE_KIND = {
    "RESOURCE_EXHAUSTED": THROTTLED, "quota_exceeded": THROTTLED, "rate_limit_exceeded": THROTTLED,
    "UNAVAILABLE": UNAVAILABLE, "DEADLINE_EXCEEDED": UNAVAILABLE, "INTERNAL": UNAVAILABLE,
    "temporarily_unavailable": UNAVAILABLE, "server_error": UNAVAILABLE,
}
# The Docker daemon reports a failed pull as text: the registry's error code (OCI distribution spec), an HTTP status it
# did not expect, or Go's network errors. Each pattern is linear (no nested repetition) and runs on bounded text.
# An HTTP status, as the daemon and Go write one ("HTTP 503", "status: 503", "Status 503", "status code 503"): never a
# bare number, which may be part of a name (a project acme-500, a tag 1.429).
_STATUS = r"(?:\bHTTP/?[0-9.]* |\b[Ss]tatus(?: code)?:? |\bcode:? )"
_DAEMON_THROTTLED = re.compile(rf"toomanyrequests|too many requests|{_STATUS}429\b|rate ?limit|quota exceeded", re.IGNORECASE)
_DAEMON_UNAVAILABLE = re.compile(  # `unavailable:` is how the daemon writes the OCI code UNAVAILABLE
    rf"{_STATUS}(?:408|500|502|503|504)\b|service unavailable|bad gateway|gateway time-?out|internal server error|"
    r"request timeout|(?<![\w-])unavailable:"
    r"|does not match bearer token"  # the registry refused its token service's token: a fresh one may pass
    r"|v1 Registry API is disabled\. If you are not explicitly using", re.IGNORECASE)  # the daemon's fallback after a v2
    # lookup failed, perhaps in passing (a v1 client refused outright says only the first sentence)
_DAEMON_NETWORK = re.compile(
    r"\bEOF\b|i/o timeout|Client\.Timeout exceeded|TLS handshake timeout|connection reset|connection refused|"
    r"broken pipe|context deadline exceeded|request canceled|server sent GOAWAY|stream error|timeout awaiting|"
    r"temporary failure in name resolution|server misbehaving|network is unreachable|no route to host|timed out|"
    r"client connection lost|use of closed network connection|server closed idle connection|connection aborted|no such host"
    r"|connectex: |did not properly respond after a period of time",  # Windows' words for a refused or timed-out connect
    re.IGNORECASE)


def of_status(status: int | None) -> str | None:
    """The kind of transient failure an HTTP status means, or None."""
    return _STATUS_KIND.get(status)


def of_google(status: int | None, code: str | None = None) -> str | None:
    """The kind of transient failure in Google's answer (its google.rpc status or OAuth error code first), or None."""
    return _GOOGLE_KIND.get(code or "") or of_status(status)


def of_daemon(text: str) -> str | None:
    """The kind of transient failure in the Docker daemon's report of a pull, or None."""
    text = untrusted.text(text)
    for kind, pattern in ((THROTTLED, _DAEMON_THROTTLED), (UNAVAILABLE, _DAEMON_UNAVAILABLE), (NETWORK, _DAEMON_NETWORK)):
        if pattern.search(text):
            return kind
    return None


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # total tries per call
    budget: float = 120.0  # seconds, across all tries of one call, pauses included
    base: float = 0.5
    cap: float = 8.0  # longest pause, also for a server's Retry-After
    timeout: float = 30.0  # one exchange, from connecting to the last byte of the answer
    throttled: float = 2.0  # shortest pause after being throttled without Retry-After: STS says "retry after a few seconds"

    def delay(self, attempt: int, retry_after: str | None = None, kind: str | None = None) -> float:
        """The pause after failed try number `attempt` (1-based)."""
        # Retry-After in seconds only (ASCII digits: '²'.isdigit() is True but float('²') fails);
        # the HTTP-date form is rare on Google APIs and falls back to backoff.
        if retry_after and re.fullmatch(r"[0-9]{1,20}", retry_after.strip()):  # a longer wait than the cap still waits the cap
            return min(float(retry_after.strip()), self.cap)
        pause = random.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))  # full jitter
        return max(pause, self.throttled) if kind == THROTTLED else pause


class Attempts:
    """The tries of one call: `for attempt in Attempts(...)`, and after a transient failure `again(...)` either waits
    for the next try (True) or says the attempts or the budget are spent (False)."""

    def __init__(self, policy: RetryPolicy, what: str, clock=time.monotonic, sleep=time.sleep):
        self.policy, self.what, self.clock, self.sleep = policy, what, clock, sleep
        self.deadline = clock() + policy.budget
        self.count = max(1, policy.attempts)  # always one try, whatever RETRY_MAX_ATTEMPTS says

    def __iter__(self):
        return iter(range(1, self.count + 1))

    def remaining(self) -> float:
        return self.deadline - self.clock()

    def again(self, attempt: int, problem: str, kind: str | None = None, retry_after: str | None = None) -> bool:
        pause = self.policy.delay(attempt, retry_after, kind)
        if attempt >= self.count or self.clock() + pause >= self.deadline:
            return False
        log.warning(f"{self.what}: {problem}, retrying in {pause:.1f}s (attempt {attempt + 1} of {self.count})")
        self.sleep(pause)
        return True
