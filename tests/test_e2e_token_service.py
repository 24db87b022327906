"""End-to-end: the registry's token service is where the daemon sends the Google token, so a listed registry
whose `auth.token.realm` is on an unlisted host gets no token at all. A real docker-registry, a recording server
as its token service, the real pipe image on the plain daemon."""

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support import stack
from tests.support.figures import probe
from tests.support.pipe_runs import step_token, variables

pytestmark = pytest.mark.e2e

RECORDER_HOST = "127.0.0.2"  # another host: loopback, so plain http is a token destination the pipe would accept


class _Recorder(BaseHTTPRequestHandler):
    """A would-be token service: records who asked (never the credentials themselves) and refuses."""

    def do_GET(self):
        self.server.asked.append({"query": parse_qs(urlsplit(self.path).query),
                                  "credentials": self.headers.get("Authorization") is not None})
        body = b'{"errors":[{"code":"UNAUTHORIZED","message":"recorder"}]}'
        self.send_response(401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


def _free_port(host: str) -> int:
    with socket.socket() as probe_socket:
        probe_socket.bind((host, 0))
        return probe_socket.getsockname()[1]


@pytest.fixture
def foreign_token_service(live_stack, tmp_path):
    """(registry host:port, token service host:port, the requests the token service received)."""
    recorder = ThreadingHTTPServer((RECORDER_HOST, 0), _Recorder)
    recorder.asked = []
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    realm = f"{RECORDER_HOST}:{recorder.server_address[1]}"
    registry = f"127.0.0.1:{_free_port('127.0.0.1')}"
    process = stack.another_registry(registry, f"http://{realm}/token", tmp_path)
    try:
        yield registry, realm, recorder.asked
    finally:
        process.terminate()
        process.wait(timeout=30)
        recorder.shutdown()
        recorder.server_close()


def test_a_listed_registry_with_an_unlisted_token_service_gets_no_token(live_stack, world, clone, foreign_token_service):
    registry, realm, asked = foreign_token_service
    with probe("token service on an unlisted host"):
        run = live_stack.run_pipe(clone, variables(world, SERVICE_ACCOUNT=world.labels["service_account"],
                                                   IMAGE=f"{registry}/acme-ci/private/app:1", REGISTRIES=registry,
                                                   SCRIPT="echo never"), step_token(world))
        assert run.exit_code == 1
        [failure] = [line for line in run.stdout.splitlines() if "✖" in line]
        assert registry in failure and realm in failure and "REGISTRIES" in failure, failure
        assert "Traceback" not in run.log and "never" not in run.stdout
        assert asked == [], "the unlisted token service was sent something"
        assert [r.route for r in live_stack.emulator.requests if r.route in ("sts", "iam")] == [], "no token may exist"


def test_listing_the_token_service_too_lets_the_token_go_there(live_stack, world, clone, foreign_token_service):
    """The control: with the token service listed, the daemon does take the credentials to it."""
    registry, realm, asked = foreign_token_service
    run = live_stack.run_pipe(clone, variables(world, SERVICE_ACCOUNT=world.labels["service_account"],
                                               IMAGE=f"{registry}/acme-ci/private/app:1", REGISTRIES=f"{registry},{realm}",
                                               SCRIPT="echo never"), step_token(world))
    assert run.exit_code == 1  # the recorder is no real token service
    assert asked and all(a["credentials"] and a["query"]["service"] == [registry] for a in asked), asked
