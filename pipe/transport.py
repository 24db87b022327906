"""HTTP for google-auth: explicit timeouts, extra headers and classified retries.

google-auth makes a single attempt on STS and IAM Credentials, so one dropped connection would
fail a whole deployment. Retry what is transient (connection errors, timeouts, 408, 429, 5xx)
with capped, jittered exponential backoff; return everything else at once so the caller can
explain it.
"""

import logging
import random
import time
from dataclasses import dataclass

from google.auth import exceptions
from google.auth.transport import requests as google_requests

log = logging.getLogger("pipe")

RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # total tries per call
    budget: float = 60.0  # seconds, across all tries of one call
    base: float = 0.5
    cap: float = 8.0
    timeout: float = 20.0  # per request

    def delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after and retry_after.strip().isdigit():
            return min(float(retry_after), self.cap)
        return random.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))


def describe(url: str) -> str:
    if url.endswith("/v1/token"):
        return "Google STS token exchange"
    if ":generateAccessToken" in url:
        return "IAM Credentials generateAccessToken"
    if ":generateIdToken" in url:
        return "IAM Credentials generateIdToken"
    return url.split("?")[0]


class Transport(google_requests.Request):
    def __init__(self, policy: RetryPolicy = RetryPolicy(), headers: dict | None = None, sleep=time.sleep):
        super().__init__()
        self.policy = policy
        self.headers = headers or {}
        self.sleep = sleep

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
        headers = {**(headers or {}), **self.headers}
        started = time.monotonic()
        for attempt in range(1, self.policy.attempts + 1):
            response, error, retry_after = None, None, None
            try:
                response = super().__call__(
                    url, method=method, body=body, headers=headers, timeout=self.policy.timeout, **kwargs
                )
            except exceptions.TransportError as caught:
                error = caught
                problem = f"connection failed ({type(caught.__cause__ or caught).__name__})"
            else:
                if response.status not in RETRYABLE_STATUS:
                    return response
                problem, retry_after = f"HTTP {response.status}", response.headers.get("Retry-After")
            pause = self.policy.delay(attempt, retry_after)
            if attempt == self.policy.attempts or time.monotonic() - started + pause > self.policy.budget:
                if response is not None:
                    return response  # the caller explains Google's final answer
                raise error
            log.warning(f"{describe(url)}: {problem}, retrying in {pause:.1f}s (attempt {attempt + 1} of {self.policy.attempts})")
            self.sleep(pause)
        raise AssertionError("unreachable")
