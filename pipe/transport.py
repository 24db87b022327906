"""HTTP for google-auth: explicit timeouts, extra headers and classified retries.

google-auth makes a single attempt on STS and IAM Credentials, so one dropped connection would
fail a whole deployment. Retry what is transient (connection errors, timeouts, 408, 429, 5xx)
with capped, jittered exponential backoff; return everything else at once so the caller can
explain it.
"""

import logging
import random
import re
import time
from dataclasses import dataclass

import requests
from google.auth import exceptions
from google.auth.transport import requests as google_requests

from pipe import urls
from pipe.errors import PipeError

log = logging.getLogger("pipe")

RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
# Failures where a second try can succeed. An SSLError is a ConnectionError too, but a bad
# certificate stays bad; an invalid URL or a missing CA bundle is raised at once as well.
_TRANSIENT = (requests.exceptions.ConnectionError, requests.exceptions.Timeout, requests.exceptions.ChunkedEncodingError)
_PERMANENT = (requests.exceptions.SSLError,)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # total tries per call
    budget: float = 60.0  # seconds, across all tries of one call, pauses included
    base: float = 0.5
    cap: float = 8.0  # longest pause, also for a server's Retry-After
    timeout: float = 20.0  # per request (connect and read)
    throttled: float = 2.0  # shortest pause after a 429 without Retry-After: STS says "retry after a few seconds"

    def delay(self, attempt: int, retry_after: str | None, status: int | None = None) -> float:
        """The pause after failed try number `attempt` (1-based)."""
        # Retry-After in seconds only (ASCII digits: '²'.isdigit() is True but float('²') fails);
        # the HTTP-date form is rare on Google APIs and falls back to backoff.
        if retry_after and re.fullmatch(r"[0-9]{1,6}", retry_after.strip()):
            return min(float(retry_after), self.cap)
        pause = random.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))  # full jitter
        return max(pause, self.throttled) if status == 429 else pause


def describe(url: str) -> str:
    if url.endswith("/v1/token"):
        return "Google STS token exchange"
    if ":generateAccessToken" in url:
        return "IAM Credentials generateAccessToken"
    if ":generateIdToken" in url:
        return "IAM Credentials generateIdToken"
    return url.split("?")[0]


def _setting(url: str) -> str:
    """The variable that chose this URL, for the redirect refusal."""
    if url.endswith("/v1/token"):
        return "STS_ENDPOINT"
    if ":generate" in url:
        return "IAM_CREDENTIALS_ENDPOINT"
    return "IMAGE or REGISTRIES"


def refuse_redirect(url: str, response) -> None:
    """Google's endpoints never redirect these calls; following one would re-send the token (and the step
    token in a re-POSTed STS form) to wherever the Location header points, past every host check."""
    location = urls.parse(response.headers.get("Location") or "")
    target = location.netloc if location else "an address the pipe will not read"
    raise PipeError(
        f"{describe(url)} answered with a redirect (HTTP {response.status}) to {target}: the pipe never follows "
        f"redirects with a token; set {_setting(url)} to the final address if you trust it."
    )


class Transport(google_requests.Request):
    def __init__(self, policy: RetryPolicy | None = None, headers: dict | None = None, sleep=time.sleep,
                 clock=time.monotonic):
        super().__init__()
        self.policy = policy or RetryPolicy()
        self.headers = headers or {}
        self.sleep = sleep
        self.clock = clock

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
        policy = self.policy
        headers = {**(headers or {}), **self.headers}
        deadline = self.clock() + policy.budget
        attempts = max(1, policy.attempts)  # always one try, whatever RETRY_MAX_ATTEMPTS says
        for attempt in range(1, attempts + 1):
            response, error, retry_after = None, None, None
            # Never wait on one request past the budget; the 0.1 s floor keeps the last try meaningful.
            request_timeout = max(0.1, min(policy.timeout, deadline - self.clock()))
            try:
                response = super().__call__(url, method=method, body=body, headers=headers, timeout=request_timeout,
                                            allow_redirects=False, **kwargs)
            except exceptions.TransportError as caught:
                cause = caught.__cause__
                if not isinstance(cause, _TRANSIENT) or isinstance(cause, _PERMANENT):
                    raise
                error = caught
                problem = "timed out" if isinstance(cause, requests.exceptions.Timeout) else "connection failed"
                problem = f"{problem} ({type(cause).__name__})"
            else:
                if 300 <= response.status < 400:
                    refuse_redirect(url, response)
                if response.status not in RETRYABLE_STATUS:
                    return response
                problem, retry_after = f"HTTP {response.status}", response.headers.get("Retry-After")
            pause = policy.delay(attempt, retry_after, response.status if response is not None else None)
            if attempt == attempts or self.clock() + pause >= deadline:
                if response is not None:
                    return response  # the caller explains Google's final answer
                raise error
            log.warning(f"{describe(url)}: {problem}, retrying in {pause:.1f}s (attempt {attempt + 1} of {attempts})")
            self.sleep(pause)
        raise AssertionError("unreachable")
