"""End-to-end: the Docker daemon never receives the Google access token, so a registry the user listed cannot make it
send that token anywhere, whatever it answers the daemon.

A hostile registry (tests/support/faulty_registry.py in front of the real one) answers the pipe's own check of its
challenge honestly, then sends the daemon elsewhere: a challenge naming a recording server on a host nobody listed,
or two challenges, the recorder's first. The pipe gets the pull-scoped registry token itself from the token service
it checked and hands the daemon only that (the Engine API's `registrytoken`): the recorder hears nothing, and the
registry sees a registry token, never a Google access token. Pull and run, on the plain daemon and on the Bitbucket-like
one (user namespaces, the authorization plugin, TLS).
"""

import base64
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support import stack
from tests.support.faulty_registry import FaultyRegistry
from tests.support.figures import probe
from tests.support.pipe_runs import APP, bitbucket_variables, step_token, variables

pytestmark = pytest.mark.e2e


class _Recorder(BaseHTTPRequestHandler):
    """A token service on a host nobody listed: it records every request, and any credentials, then refuses."""

    def do_GET(self):
        self.server.asked.append(self.headers.get("Authorization") or "")
        body = b'{"errors":[{"code":"UNAUTHORIZED","message":"recorder"}]}'
        self.send_response(401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _recorder(host: str) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, 0), _Recorder)
    server.asked = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _google_tokens_in(authorizations: list[str], emulator) -> list[str]:
    """The Google access tokens among Authorization headers (Bearer, or Basic user:password)."""
    found = []
    for value in authorizations:
        scheme, _, credential = value.partition(" ")
        if scheme.lower() == "basic":
            credential = base64.b64decode(credential).decode(errors="replace").partition(":")[2]
        info = emulator.token_info(credential)
        if info is not None:
            found.append(credential)
    return found


LATER = {
    "another realm": lambda recorder: [f'Bearer realm="{recorder}/token",service="evil"'],
    "two challenges": lambda recorder: [f'Bearer realm="{recorder}/token",service="evil"', 'Bearer realm="x"'],
}


@pytest.mark.parametrize("later", LATER)
@pytest.mark.parametrize("action", ["pull", "run"])
def test_a_registry_that_answers_the_daemon_differently_gets_no_google_token(live_stack, world, clone, later, action):
    recorder = _recorder("127.0.0.2")  # loopback: a realm the pipe would accept over http, had it been listed
    front = FaultyRegistry(stack.REGISTRY, later_challenges=LATER[later](f"http://127.0.0.2:{recorder.server_address[1]}")).start()
    image = f"{front.address}/acme-ci/private/app:1"
    try:
        with probe(f"registry re-challenges the daemon ({later}), {action}, plain daemon"):
            live_stack.forget_image(image)
            extra = {"SCRIPT": "echo ran-ok"} if action == "run" else {}
            run = live_stack.run_pipe(clone, variables(world, SERVICE_ACCOUNT=world.labels["service_account"], IMAGE=image,
                                                       REGISTRIES=f"{front.address},127.0.0.1:8765", **extra), step_token(world))
            assert run.exit_code == 0, run.log
            assert action == "pull" or "ran-ok" in run.stdout
            assert recorder.asked == [], "the daemon went to the other token service"
            assert front.authorizations and not _google_tokens_in(front.authorizations, live_stack.emulator)
            assert all(value.startswith("Bearer ") for value in front.authorizations)  # the registry token, as a bearer
    finally:
        front.stop()
        recorder.shutdown()
        recorder.server_close()


def test_two_challenges_naming_an_unlisted_token_service_first_are_refused_before_any_token(live_stack, world, clone):
    """Two Bearer challenges naming different token services: clients that split header lines differently would pick
    different ones, so the pipe refuses before anything is minted, whichever comes first."""
    recorder = _recorder("127.0.0.2")
    realm = f"http://127.0.0.2:{recorder.server_address[1]}"
    front = FaultyRegistry(stack.REGISTRY, later_challenges=[f'Bearer realm="{realm}/token"', 'Bearer realm="http://127.0.0.1:8765/v2/token"'])
    front._challenges_answered = 1  # the very first answer already carries the two challenges
    front.start()
    try:
        with probe("registry sends two challenges, the unlisted one first"):
            run = live_stack.run_pipe(clone, variables(world, SERVICE_ACCOUNT=world.labels["service_account"],
                                                       IMAGE=f"{front.address}/acme-ci/private/app:1",
                                                       REGISTRIES=f"{front.address},127.0.0.1:8765"), step_token(world))
            assert run.exit_code == 1
            assert "a challenge clients read differently (it names several token services)" in run.stdout, run.stdout
            assert recorder.asked == []
            assert [r.route for r in live_stack.emulator.requests if r.route in ("sts", "iam")] == []
    finally:
        front.stop()
        recorder.shutdown()
        recorder.server_close()


@pytest.mark.parametrize("action", ["pull", "run"])
def test_on_the_bitbucket_like_daemon_too(bitbucket_stack, bitbucket_world, bitbucket_clone, action):

    service = bitbucket_stack.service
    recorder = _recorder(service.address)
    front = FaultyRegistry(service.registry, host=service.address, tls=(str(service.cert), str(service.key)),
                           upstream_ca=str(service.ca),
                           later_challenges=[f'Bearer realm="http://{service.address}:{recorder.server_address[1]}/token"']).start()
    trusted = stack.CERTS_D / front.address / "ca.crt"  # the daemon trusts this registry as it trusts the suite's own
    trusted.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(service.ca, trusted)
    image = f"{front.address}/{APP}"
    try:
        with probe(f"registry re-challenges the daemon, {action}, Bitbucket-like daemon"):
            bitbucket_stack.forget_image(image)
            extra = {"SCRIPT": "echo ran-ok"} if action == "run" else {}
            env = bitbucket_variables(bitbucket_stack, bitbucket_world, IMAGE=image, **extra)
            env["REGISTRIES"] = [*env["REGISTRIES"], front.address]
            run = bitbucket_stack.run_pipe(bitbucket_clone, env, step_token(bitbucket_world))
            assert run.exit_code == 0, run.log
            assert action == "pull" or "ran-ok" in run.stdout
            assert recorder.asked == []
            assert front.authorizations and not _google_tokens_in(front.authorizations, bitbucket_stack.emulator)
    finally:
        front.stop()
        recorder.shutdown()
        recorder.server_close()
        shutil.rmtree(Path(trusted).parent, ignore_errors=True)
