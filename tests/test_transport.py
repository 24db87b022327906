"""Classified retries, driven through the real google-auth clients against the Google emulator.

A fake sleep (and a clock that moves with it) keeps the tests fast while the pauses and the time
budget are checked exactly.
"""

import json
import logging
import time

import pytest
from google.auth import exceptions, identity_pool, impersonated_credentials

from pipe.retry import RetryPolicy
from pipe.transport import Transport
from pipe.user_cred_config import JWT
from tests.support.emulator import CLOUD_PLATFORM


class StepToken(identity_pool.SubjectTokenSupplier):
    """The pipe's way to hand google-auth the token (pipe.credentials._StepTokenSupplier)."""

    def __init__(self, token):
        self.token = token

    def get_subject_token(self, context, request):
        return self.token


class FakeTime:
    """sleep() records the pause and moves clock() forward by it: no test waits for real."""

    def __init__(self):
        self.pauses: list[float] = []

    def sleep(self, seconds):
        self.pauses.append(seconds)

    def clock(self):
        return time.monotonic() + sum(self.pauses)


@pytest.fixture
def fake():
    return FakeTime()


@pytest.fixture
def retry_lines(caplog):
    caplog.set_level(logging.WARNING, logger="pipe")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "pipe" and r.levelno == logging.WARNING]


def transport(fake, **policy):
    return Transport(RetryPolicy(**policy), sleep=fake.sleep, clock=fake.clock)


def federated(emu, audience=None, impersonate=None):
    """identity_pool.Credentials as pipe.credentials.federated_credentials builds them, on the emulator."""
    world = emu.world
    token = world.issuer().mint(world.labels["repository_uuid"])
    credentials = identity_pool.Credentials(
        audience=audience or world.labels["audience"],
        subject_token_type=JWT,
        token_url=f"{emu.url}/v1/token",
        subject_token_supplier=StepToken(token),
        scopes=[CLOUD_PLATFORM],
    )
    if impersonate is None:
        return credentials
    return impersonated_credentials.Credentials(
        source_credentials=credentials,
        target_principal=impersonate,
        target_scopes=[CLOUD_PLATFORM],
        iam_endpoint_override=f"{emu.url}/v1/projects/-/serviceAccounts/{impersonate}:generateAccessToken",
    )


def sts_requests(emu):
    return [r for r in emu.requests if r.route == "sts"]


def test_two_503s_then_success(emu, fake, retry_lines):
    emu.faults.inject("sts", "503", count=2)
    credentials = federated(emu)
    credentials.refresh(transport(fake))
    assert credentials.token.startswith("ya29.")
    assert [(r.status, r.fault) for r in sts_requests(emu)] == [(503, "503"), (503, "503"), (200, None)]
    lines = retry_lines()
    assert len(lines) == 2 and len(fake.pauses) == 2
    assert "Google STS token exchange: HTTP 503" in lines[0] and "attempt 2 of 5" in lines[0]
    assert "attempt 3 of 5" in lines[1]


def test_connection_resets_are_survived(emu, fake, retry_lines):
    emu.faults.inject("sts", "reset", count=2)
    credentials = federated(emu)
    credentials.refresh(transport(fake))
    assert credentials.valid
    assert [r.fault for r in sts_requests(emu)] == ["reset", "reset", None]
    assert all("connection failed" in line for line in retry_lines())


def test_a_response_slower_than_the_timeout_is_retried(emu, fake, retry_lines):
    emu.faults.inject("sts", "slow", delay=1.5)
    credentials = federated(emu)
    started = time.monotonic()
    credentials.refresh(transport(fake, timeout=0.5))
    assert credentials.valid
    assert time.monotonic() - started < 1.4  # did not wait for the slow answer
    assert len(retry_lines()) == 1 and "timed out" in retry_lines()[0] and "attempt 2 of 5" in retry_lines()[0]
    deadline = time.monotonic() + 3  # the slow request is logged once its delay is over
    while len(sts_requests(emu)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(str(r.fault) for r in sts_requests(emu)) == ["None", "slow"]


def test_429_honours_retry_after_up_to_the_cap(emu, fake):
    emu.faults.inject("sts", "429", retry_after=3)
    federated(emu).refresh(transport(fake))
    assert fake.pauses == [3]
    emu.faults.inject("sts", "429", retry_after=30)
    federated(emu).refresh(transport(fake, cap=2))
    assert fake.pauses == [3, 2]


def test_a_400_is_returned_at_once(emu, fake, retry_lines):
    audience = emu.world.labels["audience"].replace("/providers/acme", "/providers/nobody")
    with pytest.raises(exceptions.OAuthError, match="invalid_target"):
        federated(emu, audience=audience).refresh(transport(fake))
    assert len(sts_requests(emu)) == 1
    assert fake.pauses == [] and retry_lines() == []


def test_exhausted_attempts_return_googles_last_answer(emu, fake, retry_lines):
    emu.faults.inject("sts", "503", count=5)
    with pytest.raises(exceptions.OAuthError) as caught:
        federated(emu).refresh(transport(fake))
    body = json.loads(caught.value.args[1])  # what pipe.credentials hands to diagnose_google.sts_error
    assert body["error"]["code"] == 503 and body["error"]["status"] == "UNAVAILABLE"
    assert len(sts_requests(emu)) == 5
    assert [line.split("(")[-1] for line in retry_lines()] == [f"attempt {n} of 5)" for n in (2, 3, 4, 5)]


def test_the_time_budget_stops_retries(emu, fake, retry_lines):
    emu.faults.inject("sts", "429", count=5, retry_after=3)
    with pytest.raises(exceptions.OAuthError):
        federated(emu).refresh(transport(fake, budget=7))
    # 3 s + 3 s fit in 7 s; a third pause would end past the budget, so the third 429 is final.
    assert fake.pauses == [3, 3]
    assert len(sts_requests(emu)) == 3 and len(retry_lines()) == 2


def test_impersonation_is_retried_too(emu, fake, retry_lines):
    emu.faults.inject("iam", "500")
    credentials = federated(emu, impersonate=emu.world.labels["service_account"])
    credentials.refresh(transport(fake))
    assert credentials.valid
    assert [(r.route, r.status) for r in emu.requests] == [("sts", 200), ("iam", 500), ("iam", 200)]
    assert len(retry_lines()) == 1 and retry_lines()[0].startswith("IAM Credentials generateAccessToken: HTTP 500")


def test_extra_headers_reach_google(emu, fake):
    reason = "deploy acme/app #42"
    federated(emu).refresh(Transport(RetryPolicy(), headers={"X-Goog-Request-Reason": reason}, sleep=fake.sleep))
    record = sts_requests(emu)[0]
    assert record.request_reason == reason and record.header("x-goog-request-reason") == reason


def test_errors_that_cannot_heal_are_raised_at_once(fake):
    with pytest.raises(exceptions.TransportError):
        transport(fake)("http://[::1/v1/token", method="POST")  # an invalid URL stays invalid
    assert fake.pauses == []


def test_backoff_is_capped_full_jitter_and_odd_retry_after_is_ignored():
    policy = RetryPolicy(base=0.5, cap=4)
    for attempt in range(1, 8):
        assert all(0 <= policy.delay(attempt, None) <= min(4, 0.5 * 2 ** (attempt - 1)) for _ in range(50))
    assert policy.delay(1, " 2 ") == 2 and policy.delay(1, "60") == 4
    for odd in ("²", "-1", "1.5", "Wed, 21 Oct 2015 07:28:00 GMT", ""):
        assert 0 <= policy.delay(1, odd) <= 0.5


# ---------------------------------------------------------------- redirects: never followed with a token

class _Recorder:
    """A loopback HTTP server that answers every request with one fixed reply and remembers what it got."""

    def __init__(self, status: int, headers: dict | None = None):
        import http.server
        import threading

        self.received: list[tuple[str, str, bytes]] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.received.append((self.command, self.path, body))
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder():
    target = _Recorder(200)
    yield target
    target.close()


def _pipe_config(world, **variables):
    from pathlib import Path

    from pipe import config

    return config.load({"WORKLOAD_IDENTITY_PROVIDER": world.labels["provider"], **variables}, Path("/tmp"))


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("stage", ["sts", "iam"])
def test_a_redirect_never_carries_a_token_anywhere(emu, recorder, fake, status, stage):
    """An allowed endpoint answering a redirect: nothing reaches the Location host, and the pipe says why in one line."""
    from pipe import credentials, oidc
    from pipe.errors import PipeError
    from tests.support.figures import probe

    redirecting = _Recorder(status, {"Location": f"{recorder.url}/v1/token"})
    try:
        with probe(f"{stage} endpoint redirects ({status})"):
            sts, iam = (redirecting.url, emu.url) if stage == "sts" else (emu.url, redirecting.url)
            world = emu.world
            cfg = _pipe_config(world, STS_ENDPOINT=sts, IAM_CREDENTIALS_ENDPOINT=iam, SERVICE_ACCOUNT=world.labels["service_account"])
            step = oidc.read({"BITBUCKET_STEP_OIDC_TOKEN": world.issuer().mint(world.labels["repository_uuid"])})
            with pytest.raises(PipeError) as refused:
                credentials.mint(cfg, step, transport(fake))
            assert recorder.received == [], "the redirect was followed"
            assert len(redirecting.received) == 1
            assert f"redirect (HTTP {status}) to 127.0.0.1:{recorder.url.rsplit(':', 1)[1]}" in refused.value.message
            assert ("STS_ENDPOINT" if stage == "sts" else "IAM_CREDENTIALS_ENDPOINT") in refused.value.message
            assert "\n" not in refused.value.message
    finally:
        redirecting.close()


def test_the_registry_challenge_check_refuses_a_redirect(recorder, fake):
    from pipe import registry
    from pipe.errors import PipeError
    from tests.support.figures import probe

    redirecting = _Recorder(307, {"Location": f"{recorder.url}/v2/"})
    host = redirecting.url.removeprefix("http://")
    try:
        with probe("registry /v2/ redirects"):
            with pytest.raises(PipeError, match="redirect"):
                registry.token_service(host, (host,), transport(fake))
            assert recorder.received == []
    finally:
        redirecting.close()


@pytest.mark.parametrize("realm, also_allowed, allowed", [
    ("http://127.0.0.1:{port}/v2/token", (), True),  # the registry's own host
    ("https://evil.example/token", ("evil.example",), True),  # a token service the user listed
    ("http://127.0.0.1:1/token", (), False),  # another port is another host
    ("https://evil.example/token", (), False),
    ("http://evil.example/token", ("evil.example",), False),  # plain http off loopback: never, whatever REGISTRIES says
    ("https://localhost\\.pkg.dev/token", (), False),  # read as localhost by some clients, as a Google host by others
    ("https://us-docker.pkg.dev@127.0.0.1/token", (), False),  # userinfo
    ("", (), False),
])
def test_the_registry_token_service_must_be_allowed(fake, realm, also_allowed, allowed):
    from pipe import registry
    from pipe.errors import PipeError
    from tests.support.figures import probe

    challenge = _Recorder(401, {"WWW-Authenticate": ""})
    host = challenge.url.removeprefix("http://")
    port = host.rsplit(":", 1)[1]
    try:
        with probe(f"token service {realm or '(empty)'}"):
            challenge.server.RequestHandlerClass = _challenge_handler(f'Bearer realm="{realm.format(port=port)}",service="{host}"')
            if allowed:
                found = registry.token_service(host, (host, *also_allowed), transport(fake))
                assert str(found.realm) == realm.format(port=port) and found.service == host
            else:
                with pytest.raises(PipeError) as refused:
                    registry.token_service(host, (host, *also_allowed), transport(fake))
                assert refused.value.message.startswith(f"{host} sends registry credentials to the token service")
                assert "\n" not in refused.value.message
    finally:
        challenge.close()


def _challenge_handler(header: str):
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(401)
            self.send_header("WWW-Authenticate", header)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    return Handler


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_each_transient_status_is_retried_and_others_are_not(fake, status):
    """Exactly 408, 429, 500, 502, 503 and 504 are tried again: a 501 or a 505 is not."""
    for answered, tries in ((status, 2), (501, 1), (505, 1)):
        server = _Recorder(answered)
        try:
            transport(fake, attempts=2)(f"{server.url}/v1/token", method="POST")
            assert len(server.received) == tries, (answered, server.received)
        finally:
            server.close()
