"""pipe.container without a Docker daemon: the run container's environment, the copy of its output (redacted, the
terminal restored, a final line break), and pulls through a stand-in client whose Engine API reports Docker's event
stream (transient failures retried within the policy, permanent ones explained at once, the auth config untouched)."""

import io
import logging
import secrets
import signal
import sys

import pytest
from docker import errors as docker_errors

from pipe import bitbucket, container, parsers, redact, registry, retry, stopping
from pipe.container import TERMINAL_RESET
from pipe.errors import PipeError
from pipe.parsers import image as parse_image

IMAGE = parse_image("IMAGE", "us-docker.pkg.dev/my-proj/tools/builder:1.4")
PRINCIPAL = "serviceAccount:puller@my-proj.iam.gserviceaccount.com"


# --- run_environment ------------------------------------------------------------------------------------------

STEP_ENVIRONMENT = {
    "CI": "true",
    "BITBUCKET_BRANCH": "main",
    "BITBUCKET_COMMIT": "0123abcd",
    "BITBUCKET_CLONE_DIR": "/opt/atlassian/pipelines/agent/build",
    "BITBUCKET_REPO_FULL_NAME": "acme/app",
    "BITBUCKET_WORKSPACE": "acme",
    "BITBUCKET_APP_PASSWORD": "app-password-set-by-the-user",
    "BITBUCKET_ACCESS_TOKEN": "access-token-set-by-the-user",
    "BITBUCKET_STEP_OIDC_TOKEN": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
    "OIDC_TOKEN": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ5In0.c2ln",
    "PIPELINES_JWT_TOKEN": "jwt",
    "BITBUCKET_SSH_KEY_FILE": "/opt/atlassian/pipelines/agent/ssh/id_rsa",
    "BITBUCKET_PIPE_STORAGE_DIR": "/opt/atlassian/pipelines/agent/build/.bitbucket/pipelines/generated/pipeline/pipes",
    "BITBUCKET_CUSTOM": "a user's own BITBUCKET_ variable",
    "PATH": "/usr/bin",
    "HOME": "/root",
    "WORKLOAD_IDENTITY_PROVIDER": "projects/1/locations/global/workloadIdentityPools/p/providers/q",
}


def test_only_bitbuckets_documented_variables_are_forwarded():
    env = container.run_environment({}, STEP_ENVIRONMENT)
    assert env == {name: STEP_ENVIRONMENT[name] for name in ("CI", "BITBUCKET_BRANCH", "BITBUCKET_COMMIT", "BITBUCKET_CLONE_DIR",
                                                            "BITBUCKET_REPO_FULL_NAME", "BITBUCKET_WORKSPACE")}
    assert set(env) <= bitbucket.FORWARDED
    assert not set(env) & bitbucket.CREDENTIALS


def test_env_entries_win_and_pass_what_the_user_chose():
    user = {"CI": "false", "BITBUCKET_BRANCH": "release", "BITBUCKET_APP_PASSWORD": "passed-on-purpose", "FOO": "bar"}
    env = container.run_environment(user, STEP_ENVIRONMENT)
    assert env["CI"] == "false" and env["BITBUCKET_BRANCH"] == "release" and env["FOO"] == "bar"
    assert env["BITBUCKET_APP_PASSWORD"] == "passed-on-purpose"  # only because ENV names it
    assert "BITBUCKET_ACCESS_TOKEN" not in env and env["BITBUCKET_COMMIT"] == "0123abcd"


def test_the_forwarded_names_hold_no_credential():
    assert not bitbucket.FORWARDED & bitbucket.CREDENTIALS
    assert not {"BITBUCKET_APP_PASSWORD", "BITBUCKET_ACCESS_TOKEN", "BITBUCKET_SSH_KEY_FILE"} & bitbucket.FORWARDED


# --- the run container's output ---------------------------------------------------------------------------------

class Console:
    """sys.stdout or sys.stderr as _Output uses it: bytes go to .buffer, then flush()."""

    def __init__(self):
        self.buffer = io.BytesIO()
        self.flushes = 0

    def flush(self):
        self.flushes += 1

    def write(self, text):  # text never goes here: the copy writes bytes only
        raise AssertionError(f"text written: {text!r}")

    @property
    def data(self) -> bytes:
        return self.buffer.getvalue()


def copy(stream, raises=None) -> tuple[Console, Console]:
    """_copy_redacted(stream) with sys.stdout and sys.stderr replaced for the call only (pytest puts its own capture
    back at every phase, so a fixture could not set them)."""
    out, err = Console(), Console()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        if raises:
            with pytest.raises(raises):
                container._copy_redacted(stream)
        else:
            container._copy_redacted(stream)
    finally:
        sys.stdout, sys.stderr = saved
    return out, err


def secret() -> str:
    value = "runsecret" + secrets.token_hex(16)
    redact.add_secret(value)
    return value


def test_stdout_and_stderr_are_copied_apart():
    out, err = copy(iter([(b"building\n", None), (None, b"warning: x\n"), (b"done\n", b"")]))
    assert out.data == b"building\ndone\n"
    assert err.data == b"warning: x\n"
    assert out.flushes and err.flushes


@pytest.mark.parametrize("size", [1, 3, 7, 16, 1000])
def test_a_known_secret_is_redacted_whatever_the_chunking(size):
    value = secret().encode()
    text = b"token=" + value + b" and again: " + value + b"\n"
    chunks = [(text[i:i + size], text[i:i + size]) for i in range(0, len(text), size)]
    out, err = copy(iter(chunks))
    for console in (out, err):
        assert value not in console.data and value[:16] not in console.data
        assert console.data == b"token=[redacted] and again: [redacted]\n"


@pytest.mark.parametrize("marker", [b"\x1b[31mred", b"\x1b]0;title\x07", b"shift\x0eout", b"\x9b31m", b"\x9d0;t\x9c", b"\x90q\x9c",
                                    b"\x98sos\x9c", b"\x9epm\x9c", b"\x9fapc\x9c", "build ok\u009f".encode(), "\u009e".encode(),
                                    b"\x1b]4;1;rgb:00/00/00\x07", b"\x1b]11;#000000\x07", b"\x1b[?1049h", b"\x1b[2;3r", b"\x1b[?7l"])
def test_the_terminal_is_reset_after_output_that_held_control_sequences(marker):
    out, err = copy(iter([(b"before\n", b"plain\n"), (marker + b"\n", None)]))
    assert out.data == b"before\n" + marker + b"\n" + TERMINAL_RESET
    assert err.data == b"plain\n"  # each stream on its own: stderr held none


def test_the_reset_undoes_every_kind_of_state_a_container_can_leave():
    """One undo for each: strings (ST), hyperlinks, palette and default colours, the alternate screen, the scroll region
    (cursor saved and restored around it), autowrap, the cursor, the character set, and text attributes."""
    for undo in (b"\x1b\\", b"\x1b]8;;\x1b\\", b"\x1b]104\x1b\\", b"\x1b]110\x1b\\", b"\x1b]111\x1b\\", b"\x1b[?1049l",
                 b"\x1b7\x1b[r\x1b8", b"\x1b[?7h", b"\x1b[?25h", b"\x1b(B", b"\x0f", b"\x1b[0m"):
        assert undo in TERMINAL_RESET, undo
    assert TERMINAL_RESET.startswith(b"\x18") and TERMINAL_RESET.endswith(b"\x1b(B\x0f\x1b[0m")  # CAN first; the DECRC's
    # restored attributes and character set are overridden last


def test_plain_output_gets_no_reset():
    out, err = copy(iter([("héllo wörld ✔\n".encode(), b"\tdone\r\n")]))
    assert out.data == "héllo wörld ✔\n".encode()
    assert err.data == b"\tdone\r\n"


def test_a_missing_final_line_break_is_added():
    out, err = copy(iter([(b"no line break", b"\x1b[1mbold")]))
    assert out.data == b"no line break\n"
    assert err.data == b"\x1b[1mbold" + TERMINAL_RESET + b"\n"


def test_an_empty_stream_writes_nothing():
    out, err = copy(iter([]))
    assert out.data == b"" and err.data == b""


def test_the_terminal_is_restored_when_the_stream_breaks_midway():
    def stream():
        yield b"\x1b[8mhidden and no line break", None
        yield None, b"\x1b(0line drawing"
        raise KeyboardInterrupt  # a signal while the container runs

    out, err = copy(stream(), raises=KeyboardInterrupt)
    assert out.data == b"\x1b[8mhidden and no line break" + TERMINAL_RESET + b"\n"
    assert err.data == b"\x1b(0line drawing" + TERMINAL_RESET + b"\n"


def test_a_tail_held_back_for_redaction_is_written_when_the_stream_breaks():
    value = secret().encode()

    def stream():
        yield b"progress 42%", None
        yield b" secret " + value, None
        raise RuntimeError("attach stream lost")

    out, _ = copy(stream(), raises=RuntimeError)
    assert out.data == b"progress 42% secret [redacted]\n"


# --- pull ------------------------------------------------------------------------------------------------------

class FakeTime:
    """The retry's clock and sleep: a pause is recorded and moves the clock, nobody waits."""

    def __init__(self):
        self.now = 1000.0
        self.pauses: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


@pytest.fixture
def fake(monkeypatch):
    """pipe.container.pull builds its Attempts with the real clock and sleep (bound when pipe.retry was imported),
    so the class is replaced by one that takes the fake ones."""
    clock = FakeTime()
    real = retry.Attempts
    monkeypatch.setattr(retry, "Attempts", lambda policy, what, *args, **kwargs: real(policy, what, clock.clock, clock.sleep))
    return clock


class Daemon:
    """The Docker SDK client as pull() uses it: client.api.pull(...) yields the Engine API's decoded events. Each
    call plays the next script: a list of events, or an exception to raise."""

    def __init__(self, *scripts):
        self.api = self
        self.scripts = list(scripts)
        self.calls: list[tuple[str, dict]] = []

    def pull(self, reference, **options):
        self.calls.append((reference, options))
        script = self.scripts[min(len(self.calls), len(self.scripts)) - 1]
        if isinstance(script, Exception):
            raise script
        yield from script


def failing(text: str) -> list[dict]:
    return [{"status": "Pulling from my-proj/tools/builder", "id": "1.4"}, {"errorDetail": {"message": text}, "error": text}]


SUCCESS = [
    {"status": "Pulling from my-proj/tools/builder", "id": "1.4"},
    {"status": "Pulling fs layer", "id": "a1b2c3"},
    {"status": "Downloading", "progressDetail": {"current": 1, "total": 9}, "id": "a1b2c3"},
    {"status": "Downloading", "progressDetail": {"current": 5, "total": 9}, "id": "a1b2c3"},
    {"status": "Pull complete", "id": "a1b2c3"},
    {"status": "Digest: sha256:" + "a" * 64},
    {"status": "Status: Downloaded newer image for us-docker.pkg.dev/my-proj/tools/builder:1.4"},
]

TRANSIENT = [
    "received unexpected HTTP status: 503 Service Unavailable",
    'Get "https://us-docker.pkg.dev/v2/": EOF',
    "toomanyrequests: Quota exceeded for quota metric 'Requests per project per region'",
    'Get "https://us-docker.pkg.dev/v2/": net/http: TLS handshake timeout',
    "read tcp 172.17.0.2:41234->142.250.1.82:443: read: connection reset by peer",
    "error pulling image configuration: download failed after attempts=6: unexpected EOF",
]
PERMANENT = [
    'denied: Permission "artifactregistry.repositories.downloadArtifacts" denied on resource '
    '"projects/my-proj/locations/us/repositories/tools" (or it may not exist)',
    "manifest unknown",
    'manifest for us-docker.pkg.dev/my-proj/tools/builder:1.4 not found: manifest unknown: Failed to fetch "1.4"',
    "unauthorized: authentication failed",
    "denied: requested access to the resource is denied",
]


def pull(daemon, auth=None, **policy):
    container.pull(daemon, IMAGE, {"registrytoken": "registry-token-0123456789"} if auth is None else auth, PRINCIPAL,
                   retry.RetryPolicy(**policy))


@pytest.mark.parametrize("text", TRANSIENT)
def test_transient_failures_are_retried_up_to_the_attempts(fake, text):
    daemon = Daemon(failing(text))
    with pytest.raises(PipeError) as failed:
        pull(daemon, attempts=4)
    assert len(daemon.calls) == 4 and len(fake.pauses) == 3
    line = failed.value.message
    assert "\n" not in line and IMAGE.reference in line and "even after retries" in line


@pytest.mark.parametrize("text", TRANSIENT[:3])
def test_a_transient_failure_then_success(fake, text):
    daemon = Daemon(failing(text), failing(text), SUCCESS)
    pull(daemon, attempts=5)
    assert len(daemon.calls) == 3 and len(fake.pauses) == 2


@pytest.mark.parametrize("text", PERMANENT)
def test_permanent_failures_stop_at_once(fake, text):
    daemon = Daemon(failing(text), SUCCESS)
    with pytest.raises(PipeError) as failed:
        pull(daemon, attempts=5)
    assert len(daemon.calls) == 1 and fake.pauses == []
    line = failed.value.message
    assert "\n" not in line and "even after retries" not in line
    assert IMAGE.path in line


@pytest.mark.parametrize("text", [
    'denied: Permission "artifactregistry.repositories.downloadArtifacts" denied on resource '
    '"projects/acme-500/locations/us/repositories/tools" (or it may not exist)',
    'manifest for us-docker.pkg.dev/my-proj/tools/builder:1.429 not found: manifest unknown: Failed to fetch "1.429"',
])
def test_permanent_failures_naming_numbers_stop_at_once(fake, text):
    daemon = Daemon(failing(text), SUCCESS)
    with pytest.raises(PipeError):
        pull(daemon, attempts=5)
    assert len(daemon.calls) == 1 and fake.pauses == []


def test_throttled_pulls_pause_at_least_the_throttled_minimum(fake):
    daemon = Daemon(failing("toomanyrequests: too many requests"))
    with pytest.raises(PipeError):
        pull(daemon, attempts=3, throttled=2.0, base=0.01)
    assert fake.pauses == [2.0, 2.0]


def test_the_time_budget_stops_pull_retries(fake):
    daemon = Daemon(failing("toomanyrequests: too many requests"))
    with pytest.raises(PipeError, match="rate-limiting"):
        pull(daemon, attempts=10, budget=5.0, throttled=2.0, base=0.01)
    assert fake.pauses == [2.0, 2.0] and len(daemon.calls) == 3  # a third pause would end past the budget


def test_an_engine_api_error_is_read_like_an_event(fake):
    daemon = Daemon(docker_errors.APIError("500 Server Error", explanation="Get \"https://us-docker.pkg.dev/v2/\": EOF"),
                    docker_errors.APIError("404 Client Error", explanation="manifest unknown"))
    with pytest.raises(PipeError, match="was not found"):
        pull(daemon, attempts=5)
    assert len(daemon.calls) == 2 and len(fake.pauses) == 1


def test_a_secret_in_the_daemons_text_is_redacted(fake, caplog):
    caplog.set_level(logging.INFO, logger="pipe")
    value = secret()
    daemon = Daemon(failing(f"Get \"https://us-docker.pkg.dev/v2/token?t={value}\": EOF"))
    with pytest.raises(PipeError) as failed:
        pull(daemon, attempts=2)
    assert value not in failed.value.message and redact.REDACTED in failed.value.message
    assert all(value not in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("auth", [{"registrytoken": "registry-token-0123456789"}, {}])
def test_the_daemon_gets_the_auth_config_exactly_as_given(fake, auth):
    given = dict(auth)
    daemon = Daemon(failing("received unexpected HTTP status: 503 Service Unavailable"), SUCCESS)
    pull(daemon, auth=auth, attempts=3)
    assert len(daemon.calls) == 2
    for reference, options in daemon.calls:
        assert reference == IMAGE.reference
        assert options == {"stream": True, "decode": True, "auth_config": given}
        assert not {"username", "password", "auth", "identitytoken"} & set(options["auth_config"])
    assert auth == given  # not changed in place either


def test_registry_daemon_auth_reaches_the_daemon_unchanged(fake):
    daemon = Daemon(SUCCESS)
    container.pull(daemon, IMAGE, registry.daemon_auth("registry-token-abcdef0123"), PRINCIPAL, retry.RetryPolicy())
    assert daemon.calls[0][1]["auth_config"] == {"registrytoken": "registry-token-abcdef0123"}


def test_progress_is_logged_once_per_layer_state(fake, caplog):
    caplog.set_level(logging.INFO, logger="pipe")
    pull(Daemon(SUCCESS + [{"status": "Downloading", "id": "a1b2c3"}] * 50))
    lines = [record.getMessage() for record in caplog.records if record.name == "pipe"]
    assert lines.count("  a1b2c3: Downloading") == 2  # before and after "Pull complete", never per progress event
    assert lines[0] == f"Pulling {IMAGE.reference}"
    assert f"  Status: Downloaded newer image for {IMAGE.reference}" in lines


# --- the run container is removed however its creation ends ---------------------------------------------------------

class _Daemon:
    """The Docker SDK's client as container.run uses it, recording what it made and what it removed."""

    def __init__(self, on_create):
        self.on_create, self.made, self.removed = on_create, [], []
        self.containers, self.api = self, self

    def create(self, reference, **options):
        made = _Made(self, options["labels"])
        self.made.append(made)
        return self.on_create(made)

    def list(self, all, filters):  # noqa: A002 (the SDK's name)
        name, _, value = filters["label"].partition("=")
        return [c for c in self.made if c.labels.get(name) == value and c not in self.removed]

    def attach(self, *args, **kwargs):
        return iter([])


class _Made:
    def __init__(self, daemon, labels):
        self.daemon, self.labels, self.id, self.short_id = daemon, labels, "c0ffee", "c0ffee"

    def remove(self, force, v):
        assert force and v  # and its anonymous volumes
        self.daemon.removed.append(self)

    def start(self):
        raise AssertionError("not reached")


def _run(daemon, tmp_path):
    return container.run(daemon, parsers.image("IMAGE", "us-docker.pkg.dev/p/r/i:1"), script="true", command=[],
                         environment={}, workdir=tmp_path, clone_dir=tmp_path)


def test_a_stop_signal_while_the_container_is_created_still_removes_it(tmp_path):
    """SIGTERM arrives while the daemon makes the container: it waits for the container's id, then the run stops and
    the container is removed."""
    def signalled(made):
        signal.raise_signal(signal.SIGTERM)
        return made

    daemon = _Daemon(signalled)
    restore = stopping.install()
    try:
        with pytest.raises(stopping.Stopped):
            _run(daemon, tmp_path)
    finally:
        restore()
    assert daemon.removed == daemon.made and len(daemon.made) == 1


def test_a_create_that_fails_after_the_daemon_made_the_container_still_removes_it(tmp_path):
    """docker-py's create is a POST, then a GET of what it made: the second can fail with the container made."""
    def made_then_failed(made):
        raise docker_errors.APIError("inspect failed")

    daemon = _Daemon(made_then_failed)
    with pytest.raises(PipeError):
        _run(daemon, tmp_path)
    assert daemon.removed == daemon.made and len(daemon.made) == 1


def test_the_engine_api_never_goes_through_a_proxy(monkeypatch):
    """Bitbucket's docker service is plain http (tcp://…:2375): a proxy variable set for the step's own traffic must
    never see the Engine API, which carries registry tokens and ENV's values."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    def recorder(answer: bytes):
        seen = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                seen.append(self.path)
                body = b'{"ApiVersion": "1.41"}' if self.path.endswith("/version") else answer
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Api-Version", "1.41")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, seen

    engine, engine_saw = recorder(b"OK")
    proxy, proxy_saw = recorder(b"proxied")
    try:
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.server_address[1]}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{engine.server_address[1]}")
        client = container.connect(timeout=5)
        assert client.api.trust_env is False and client.api.api_version == "1.41"  # asked, as "auto" would
        assert engine_saw == ["/version", "/v1.41/_ping"] and proxy_saw == []
    finally:
        engine.shutdown()
        proxy.shutdown()
