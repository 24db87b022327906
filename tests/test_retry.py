"""pipe.retry: what is transient (HTTP statuses, Google's codes, the Docker daemon's wording), how long to wait
(Retry-After, capped full jitter), and the tries of one call (count, budget, the log line), on a fake clock."""

import logging

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipe import retry
from pipe.retry import NETWORK, THROTTLED, UNAVAILABLE, Attempts, RetryPolicy
from pipe.untrusted import MAX_TEXT
from tests.support.budgets import EXAMPLE_DEADLINE_MS
from tests.support.inputs import ADVERSARIAL, BIG_TEXTS, with_examples

LIMITS = settings(max_examples=200, deadline=EXAMPLE_DEADLINE_MS)
KINDS = {None, THROTTLED, UNAVAILABLE, NETWORK}

retry.of_daemon("warm up")


# --- statuses and Google's codes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("status, kind", [
    (408, UNAVAILABLE), (429, THROTTLED), (500, UNAVAILABLE), (502, UNAVAILABLE), (503, UNAVAILABLE), (504, UNAVAILABLE),
    (None, None), (200, None), (400, None), (401, None), (403, None), (404, None), (405, None), (409, None), (412, None),
    (501, None), (505, None),
])
def test_of_status(status, kind):
    assert retry.of_status(status) == kind


@pytest.mark.parametrize("status, code, kind", [
    (429, "RESOURCE_EXHAUSTED", THROTTLED), (None, "RESOURCE_EXHAUSTED", THROTTLED), (429, "quota_exceeded", THROTTLED),
    (429, "rate_limit_exceeded", THROTTLED), (503, "UNAVAILABLE", UNAVAILABLE), (504, "DEADLINE_EXCEEDED", UNAVAILABLE),
    (500, "INTERNAL", UNAVAILABLE), (503, "temporarily_unavailable", UNAVAILABLE), (500, "server_error", UNAVAILABLE),
    (400, "server_error", UNAVAILABLE),  # the code wins over the status
    (503, None, UNAVAILABLE), (502, "", UNAVAILABLE),  # no code: the status decides
    (500, "SOMETHING_NEW", UNAVAILABLE),
    # Google's permanent answers (STS's OAuth codes, google.rpc statuses): never retried.
    (400, "invalid_grant", None), (400, "invalid_request", None), (400, "invalid_target", None), (401, "unauthorized_client", None),
    (403, "PERMISSION_DENIED", None), (400, "INVALID_ARGUMENT", None), (401, "UNAUTHENTICATED", None), (404, "NOT_FOUND", None),
    (400, "FAILED_PRECONDITION", None), (None, None, None),
])
def test_of_google(status, code, kind):
    assert retry.of_google(status, code) == kind


# --- the Docker daemon's wording --------------------------------------------------------------------------------------

# Real reports of pulls that can succeed if tried again (moby, Go's net/http and net packages, and public issues).
TRANSIENT_REPORTS = [
    ('Get "https://gcr.io/v2/": EOF', NETWORK),
    ("unexpected EOF", NETWORK),
    ('Get "https://us-east4-docker.pkg.dev/v2/k8s-artifacts-prod/images/ingress-nginx/kube-webhook-certgen/manifests/sha256:'
     '39c5b2e3310dc4264d638ad28d9d1d96c4cbb2b2dcfb52368fe4e3c63f61e10f": read tcp 10.183.231.70:43720->142.251.163.82:443: '
     "read: connection reset by peer", NETWORK),
    ("Get https://gcr.io/v1/_ping: dial tcp 74.125.204.82:443: i/o timeout", NETWORK),
    ("error pulling image configuration: download failed after attempts=6: dialing production.cloudflare.docker.com:443 with "
     "direct connection: resolving host production.cloudflare.docker.com: lookup production.cloudflare.docker.com: no such host", NETWORK),
    ('Get "https://us-docker.pkg.dev/v2/": net/http: request canceled while waiting for connection (Client.Timeout exceeded while '
     "awaiting headers)", NETWORK),
    ('Get "https://us-docker.pkg.dev/v2/": net/http: TLS handshake timeout', NETWORK),
    ('http2: server sent GOAWAY and closed the connection; LastStreamID=1999, ErrCode=NO_ERROR, debug=""', NETWORK),
    ("write tcp 172.17.0.2:41234->142.250.1.82:443: write: broken pipe", NETWORK),
    ('Get "https://us-docker.pkg.dev/v2/": context deadline exceeded', NETWORK),
    ('Get "https://gcr.io/v2/": dial tcp: lookup gcr.io on 127.0.0.11:53: server misbehaving', NETWORK),
    ('Get "https://gcr.io/v2/": dial tcp: lookup gcr.io: Temporary failure in name resolution', NETWORK),
    ("dial tcp 142.250.1.82:443: connect: network is unreachable", NETWORK),
    ('Get "http://127.0.0.1:5000/v2/": dial tcp 127.0.0.1:5000: connect: connection refused', NETWORK),
    ("net/http: timeout awaiting response headers", NETWORK),
    ("stream error: stream ID 3; INTERNAL_ERROR; received from peer", NETWORK),
    ("received unexpected HTTP status: 500 Internal Server Error", UNAVAILABLE),
    ("received unexpected HTTP status: 503 Service Unavailable", UNAVAILABLE),
    ("error pulling image configuration: received unexpected HTTP status: 502 Bad Gateway", UNAVAILABLE),
    ('Get "https://gcr.io/v2/": Service Unavailable', UNAVAILABLE),
    ('Head "https://ghcr.io/wangyoucao577/go-release-action/manifests/v1.36": received unexpected HTTP status: 503 Service Unavailable',
     UNAVAILABLE),
    ('Error: Status 500 trying to pull repository google_containers/kube-registry-proxy: "Internal Error."', UNAVAILABLE),
    ("toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: "
     "https://www.docker.com/increase-rate-limit", THROTTLED),
    ("toomanyrequests: Quota exceeded for quota metric 'Requests per project per region' and limit 'Requests per project per "
     "region per minute per region' of service 'artifactregistry.googleapis.com' for consumer 'project_number:388270116193'.", THROTTLED),
    ("toomanyrequests: retry-after: 985.86µs, allowed: 44000/minute", THROTTLED),
    ("failed to fetch anonymous token: unexpected status: 429 Too Many Requests", THROTTLED),
]
# Real reports of pulls that fail the same way however often they are tried.
PERMANENT_REPORTS = [
    'Head "https://europe-west2-docker.pkg.dev/v2/<PROJECT_ID>/ml/app/manifests/4.19.5": denied: Permission '
    '"artifactregistry.repositories.downloadArtifacts" denied on resource "projects/<PROJECT_ID>/locations/europe-west2/repositories/ml" '
    "(or it may not exist)",
    'denied: Unauthenticated request. Unauthenticated requests do not have permission "artifactregistry.repositories.downloadArtifacts" '
    'on resource "projects/PROJECT/locations/us-west2/repositories/app-config" (or it may not exist)',
    'Head "http://127.0.0.1:5000/v2/proj/repo/hello/manifests/1": unauthorized: authentication failed',
    "manifest for gcr.io/cadvisor/cadvisor:v0.41.0 not found: manifest unknown: Failed to fetch \"v0.41.0\" from request "
    '"/v2/cadvisor/cadvisor/manifests/v0.41.0".',
    'name unknown: Repository "containers" not found',
    "pull access denied for gcr.io/makisu-project/makisu, repository does not exist or may require 'docker login'",
    "Head \"https://us.gcr.io/v2/larder-prod/kubewise/manifests/0.11.11\": unknown: Project 'project:larder-prod' not found or deleted.",
    "error pulling image configuration: denied: Encountered a billing-related error. Please verify the billing status for this account.",
    "Get https://gcr.io/v2/clusterfuzz-images/base/manifests/c44bf3f-201902112042: denied: Request is prohibited by organization's "
    "policy. vpcServiceControlsUniqueIdentifier: c45c76a3f28239f8",
    'Head "https://gcr.io/v2/oauth2l/oauth2l/manifests/latest": error parsing HTTP 412 response body: invalid character \'R\' looking '
    'for beginning of value: "Request Rejected: Please contact project owners"',
    'failed to resolve reference "gcr.io/kuar-demo/kuard-amd64:blue": unexpected status from HEAD request to '
    "https://gcr.io/v2/kuar-demo/kuard-amd64/manifests/blue: 412 Precondition Failed",
    'Error: Status 405 trying to pull repository k8s-testimages/kubekins-test: "v1 Registry API is disabled. See '
    'https://cloud.google.com/container-registry/docs/support/deprecation-notices"',
    "error pulling image configuration: error parsing HTTP 403 response body: invalid character '<' looking for beginning of value: "
    "\"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code><Message>Access denied.</Message>\"",
    "x509: certificate signed by unknown authority",
    'Get "https://10.0.0.5/v2/": http: server gave HTTP response to HTTPS client',
    "no matching manifest for linux/amd64 in the manifest list entries",
    "invalid reference format: repository name (DRuggeri/alertmanager_gotify_bridge) must be lowercase",
    "unauthorized: You don't have the needed permissions to perform this operation, and you may have invalid credentials. To "
    "authenticate your request, follow the steps in: https://cloud.google.com/container-registry/docs/advanced-authentication",
    'manifest for us-docker.pkg.dev/my-project/tools/builder:1.4 not found: manifest unknown: manifest unknown',
]


@pytest.mark.parametrize("text, kind", TRANSIENT_REPORTS)
def test_transient_daemon_reports(text, kind):
    assert retry.of_daemon(text) == kind
    assert retry.of_daemon(text.upper()) == kind  # the daemon's and Go's capitalisation varies


@pytest.mark.parametrize("text", PERMANENT_REPORTS)
def test_permanent_daemon_reports_are_not_transient(text):
    assert retry.of_daemon(text) is None


# A number in the image reference (a build number as tag, a name) is no HTTP status: these were retried as transient
# until the status patterns required the daemon's own prefix ("HTTP 503", "status: 503").
@pytest.mark.parametrize("text", [
    "manifest for us-docker.pkg.dev/my-project/tools/builder:502 not found: manifest unknown: manifest unknown",
    'Head "https://us-docker.pkg.dev/v2/my-project/tools/builder/manifests/429": denied: Permission '
    '"artifactregistry.repositories.downloadArtifacts" denied on resource "projects/my-project/locations/us/repositories/tools" '
    "(or it may not exist)",
    "pull access denied for gcr.io/my-project/503, repository does not exist or may require 'docker login'",
    'Head "https://us-docker.pkg.dev/v2/my-project/tools/builder/manifests/1.504": unauthorized: authentication failed',
])
def test_a_number_in_the_image_reference_is_no_http_status(text):
    assert retry.of_daemon(text) is None


def test_of_daemon_reads_only_the_bounded_start_of_a_report():
    assert retry.of_daemon("x" * MAX_TEXT + " EOF") is None
    assert retry.of_daemon("EOF " + "x" * 300_000) == NETWORK


def test_throttling_is_named_before_unavailability_and_network():
    assert retry.of_daemon("toomanyrequests: 503 Service Unavailable, connection reset") == THROTTLED
    assert retry.of_daemon("502 Bad Gateway after EOF") == UNAVAILABLE


@LIMITS
@given(ADVERSARIAL)
@with_examples(*BIG_TEXTS)
@example("EOF" * 100_000)
@example("5" * 300_000)
def test_of_daemon_gives_a_kind_or_none_for_any_text(text):
    kind = retry.of_daemon(text)
    assert kind in KINDS
    assert kind == retry.of_daemon(text[:MAX_TEXT])


# --- pauses --------------------------------------------------------------------------------------------------------------

def upper_bound(policy: RetryPolicy, attempt: int) -> float:
    return min(policy.cap, policy.base * 2 ** (attempt - 1))


@pytest.mark.parametrize("retry_after, pause", [("0", 0.0), ("1", 1.0), ("3", 3.0), (" 5 ", 5.0), ("5\r\n", 5.0), ("8", 8.0),
                                                ("9", 8.0), ("120", 8.0), ("999999", 8.0)])
def test_retry_after_in_seconds_is_honoured_up_to_the_cap(retry_after, pause):
    policy = RetryPolicy()
    assert policy.delay(1, retry_after) == pause
    assert policy.delay(4, retry_after, THROTTLED) == pause


@pytest.mark.parametrize("retry_after", [None, "", "Wed, 21 Oct 2015 07:28:00 GMT", "-1", "1.5", "+5", "0x10", "²", "٣", "5s", "1e3"])
def test_any_other_retry_after_falls_back_to_jittered_backoff(monkeypatch, retry_after):
    policy = RetryPolicy()
    monkeypatch.setattr(retry.random, "uniform", lambda low, high: high)
    assert policy.delay(3, retry_after) == upper_bound(policy, 3) == 2.0
    monkeypatch.setattr(retry.random, "uniform", lambda low, high: low)
    assert policy.delay(3, retry_after) == 0.0  # full jitter: anywhere from nothing


@pytest.mark.parametrize("retry_after", ["1000000", "86400000", " 31536000 ", "9" * 20])
def test_a_retry_after_past_the_cap_waits_the_cap_whatever_its_length(monkeypatch, retry_after):
    monkeypatch.setattr(retry.random, "uniform", lambda low, high: high)
    assert RetryPolicy().delay(1, retry_after) == RetryPolicy().cap


def test_the_backoff_doubles_to_the_cap(monkeypatch):
    monkeypatch.setattr(retry.random, "uniform", lambda low, high: high)
    assert [RetryPolicy().delay(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_throttling_without_retry_after_waits_at_least_the_throttled_pause(monkeypatch):
    monkeypatch.setattr(retry.random, "uniform", lambda low, high: low)
    assert RetryPolicy().delay(1, None, THROTTLED) == 2.0
    assert RetryPolicy().delay(1, None, UNAVAILABLE) == 0.0
    assert RetryPolicy(throttled=5.0).delay(1, "Wed, 21 Oct 2015 07:28:00 GMT", THROTTLED) == 5.0


@settings(max_examples=300, deadline=EXAMPLE_DEADLINE_MS)
@given(st.integers(1, 60), st.sampled_from([None, THROTTLED, UNAVAILABLE, NETWORK]), st.randoms(use_true_random=False),
       st.floats(0.01, 5), st.floats(0.1, 60))
def test_every_backoff_pause_is_within_its_jitter_bounds(attempt, kind, rng, base, cap):
    policy = RetryPolicy(base=base, cap=cap)
    retry.random.seed(rng.random())
    pause = policy.delay(attempt, None, kind)
    high = min(cap, base * 2 ** (attempt - 1))
    if kind == THROTTLED:
        assert policy.throttled <= pause <= max(high, policy.throttled)
    else:
        assert 0 <= pause <= high


# --- Attempts --------------------------------------------------------------------------------------------------------------

class FakeTime:
    """A clock that moves only when slept on."""

    def __init__(self, start: float = 1000.0):
        self.now, self.slept = start, []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def failing_call(policy: RetryPolicy, time: FakeTime, **failure) -> int:
    """Try a call that always fails transiently, as the pipe does; the number of tries made."""
    tries = Attempts(policy, "Calling Google STS", time.clock, time.sleep)
    made = 0
    for attempt in tries:
        made += 1
        if not tries.again(attempt, "HTTP 503", **failure):
            break
    return made


@pytest.mark.parametrize("attempts, count", [(5, 5), (1, 1), (10, 10), (0, 1), (-3, 1)])
def test_attempts_are_numbered_from_one_and_there_is_always_one(attempts, count):
    tries = Attempts(RetryPolicy(attempts=attempts), "x", FakeTime().clock, FakeTime().sleep)
    assert list(tries) == list(range(1, count + 1))


def test_a_failing_call_is_tried_attempts_times_with_a_pause_between_tries(monkeypatch):
    monkeypatch.setattr(retry.random, "uniform", lambda low, high: high)
    time = FakeTime()
    assert failing_call(RetryPolicy(attempts=5), time, kind=UNAVAILABLE) == 5
    assert time.slept == [0.5, 1.0, 2.0, 4.0]  # none after the last try


def test_the_budget_stops_retries_before_a_pause_would_pass_it(monkeypatch):
    monkeypatch.setattr(retry.random, "uniform", lambda low, high: high)
    time = FakeTime()
    assert failing_call(RetryPolicy(attempts=10, budget=4.0), time) == 4  # pauses of 0.5, 1 and 2 end at 3.5 s; 4 more would not fit
    assert time.slept == [0.5, 1.0, 2.0]
    time = FakeTime()
    assert failing_call(RetryPolicy(attempts=10, budget=3.5), time) == 3  # a pause ending exactly at the deadline is not taken
    assert time.slept == [0.5, 1.0]
    time = FakeTime()
    assert failing_call(RetryPolicy(attempts=10, budget=0.5), time) == 1 and time.slept == []


def test_time_spent_in_the_calls_counts_against_the_budget():
    time = FakeTime()
    policy = RetryPolicy(attempts=10, budget=10.0)
    tries = Attempts(policy, "x", time.clock, time.sleep)
    time.now += 9.0  # the first exchange took 9 s
    assert tries.remaining() == 1.0
    assert not tries.again(1, "timed out", retry_after="3")
    assert time.slept == []


def test_retry_after_sets_the_pause_of_again():
    time = FakeTime()
    tries = Attempts(RetryPolicy(), "x", time.clock, time.sleep)
    assert tries.again(1, "HTTP 429", THROTTLED, retry_after="3")
    assert time.slept == [3.0] and tries.remaining() == RetryPolicy().budget - 3.0


def test_each_retry_writes_one_warning_line(monkeypatch, caplog):
    monkeypatch.setattr(retry.random, "uniform", lambda low, high: high)
    time = FakeTime()
    tries = Attempts(RetryPolicy(attempts=3), "Pulling us-docker.pkg.dev/p/r/app:1", time.clock, time.sleep)
    with caplog.at_level(logging.WARNING, logger="pipe"):
        assert tries.again(1, "failed (EOF)", NETWORK)
        assert tries.again(2, "failed (EOF)", NETWORK)
        assert not tries.again(3, "failed (EOF)", NETWORK)
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("pipe", logging.WARNING, "Pulling us-docker.pkg.dev/p/r/app:1: failed (EOF), retrying in 0.5s (attempt 2 of 3)"),
        ("pipe", logging.WARNING, "Pulling us-docker.pkg.dev/p/r/app:1: failed (EOF), retrying in 1.0s (attempt 3 of 3)"),
    ]


@settings(max_examples=200, deadline=EXAMPLE_DEADLINE_MS)
@given(st.integers(-2, 12), st.floats(0, 300), st.lists(st.sampled_from([None, "0", "1", "7", "120", "soon"]), min_size=12, max_size=12),
       st.randoms(use_true_random=False))
def test_no_call_outlives_its_attempts_or_its_budget(attempts, budget, retry_afters, rng):
    retry.random.seed(rng.random())
    time = FakeTime()
    policy = RetryPolicy(attempts=attempts, budget=budget)
    tries = Attempts(policy, "x", time.clock, time.sleep)
    made = 0
    for attempt in tries:
        made += 1
        if not tries.again(attempt, "HTTP 503", UNAVAILABLE, retry_afters[attempt - 1]):
            break
    assert 1 <= made <= max(1, attempts)
    assert len(time.slept) == made - 1
    assert not time.slept or time.now < 1000.0 + budget  # every pause ended before the deadline
