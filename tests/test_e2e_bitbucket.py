"""End-to-end on the Bitbucket-like docker service (tests/support/DOCKER_SERVICE.md): user-namespace remapping, the
`pipelines` authorization plugin and a bridge as the default network. The pipe is started as Bitbucket starts it
there: on the default network, the daemon at tcp://host.docker.internal:2375, Google's endpoints and the registry
over TLS on the docker host's bridge address. Every run is scanned for leaked tokens (harness.Stack.run_pipe)."""

import base64
import hashlib
import ipaddress
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import docker
import pytest
from docker.types import Mount

from tests.support import authz_plugin, harness, stack
from tests.support.pipe_runs import APP, bitbucket_variables, step_token

e2e = pytest.mark.e2e
DENIED = f"authorization denied by plugin {stack.AUTHZ_PLUGIN}: "


@e2e
def test_run_writes_into_the_clone_as_the_remapped_root(bitbucket_stack, bitbucket_world, bitbucket_clone):
    (bitbucket_clone / "input.txt").write_text("from the clone\n")
    bitbucket_stack.forget_image(bitbucket_stack.image(APP))
    run = bitbucket_stack.run_pipe(bitbucket_clone, bitbucket_variables(
        bitbucket_stack, bitbucket_world, IMAGE=bitbucket_stack.image(APP),
        SCRIPT="cat input.txt > output.txt\ntr -s ' ' < /proc/self/uid_map >> output.txt\necho ran-ok",
    ), step_token(bitbucket_world))
    assert run.exit_code == 0, run.log
    uid, gid = bitbucket_stack.service.remap
    output = bitbucket_clone / "output.txt"
    assert output.read_text() == f"from the clone\n 0 {uid} 65536\n"  # the run container's root is the host's {uid}
    assert (output.stat().st_uid, output.stat().st_gid) == (uid, gid)
    assert "ran-ok" in run.stdout
    assert not bitbucket_stack.run_containers(bitbucket_clone)


@e2e
def test_pull_through_the_tls_registry_and_realm(bitbucket_stack, bitbucket_world, bitbucket_clone):
    image = bitbucket_stack.image(APP)
    bitbucket_stack.forget_image(image)
    run = bitbucket_stack.run_pipe(bitbucket_clone, bitbucket_variables(bitbucket_stack, bitbucket_world, IMAGE=image),
                                   step_token(bitbucket_world))
    assert run.exit_code == 0, run.log
    assert f"Pulled {image}" in run.stdout
    assert bitbucket_stack.dc.images.get(image)
    realm = [r for r in bitbucket_stack.emulator.requests if r.route == "realm"]
    assert realm and all(r.status == 200 for r in realm), "the daemon's token came from the TLS realm"
    assert [r.query["service"] for r in realm][-1] == [bitbucket_stack.service.registry]


@e2e
def test_credentials_in_the_run_container_for_a_numeric_user(live_stack, bitbucket_stack, bitbucket_world,
                                                              bitbucket_clone, tmp_path):
    """USER 1000 in a remapped container reads the 0600 files and refreshes with google-auth over TLS."""
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {live_stack.pipe_image}\nUSER 1000:1000\n")
    live_stack.dc.images.build(path=str(context), tag="local/python-nonroot:1", rm=True)
    harness.push_image(live_stack, "local/python-nonroot:1", "127.0.0.1:5000/acme-ci/private/python-nonroot:1")
    script = (
        '[ "$(id -u)" = 1000 ]\n'
        "stat -c 'mode %a' /var/run/google-cloud/credentials.json\n"
        "python3 -c 'import google.auth.identity_pool as p, google.auth.transport.requests as r, hashlib, os\n"
        'c = p.Credentials.from_file(os.environ["GOOGLE_APPLICATION_CREDENTIALS"], '
        'scopes=["https://www.googleapis.com/auth/cloud-platform"])\n'
        'c.refresh(r.Request()); print("inside-ok", hashlib.sha256(c.token.encode()).hexdigest())\''
    )
    run = bitbucket_stack.run_pipe(bitbucket_clone, bitbucket_variables(
        bitbucket_stack, bitbucket_world, IMAGE=bitbucket_stack.image("acme-ci/private/python-nonroot:1"),
        GOOGLE_CREDENTIALS_IN_CONTAINER="true", ENV=["REQUESTS_CA_BUNDLE"], SCRIPT=script,
    ), step_token(bitbucket_world))
    assert run.exit_code == 0, run.log
    assert "mode 600" in run.stdout
    [digest] = [line.split()[1] for line in run.stdout.splitlines() if line.startswith("inside-ok ")]
    [token] = [t for t in bitbucket_stack.emulator.issued_tokens() if hashlib.sha256(t.encode()).hexdigest() == digest]
    assert bitbucket_stack.emulator.token_info(token).principal.email == bitbucket_world.labels["service_account"]


class _StepService(BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.callers.append(self.client_address[0])
        body = b"step-service-ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


@e2e
def test_script_reaches_a_step_service_through_host_docker_internal(bitbucket_stack, bitbucket_world, bitbucket_clone):
    """A service of the step listens on the docker host's address; the run container finds it by name."""
    service = ThreadingHTTPServer((bitbucket_stack.service.address, 0), _StepService)
    service.callers = []
    threading.Thread(target=service.serve_forever, daemon=True).start()
    try:
        port = service.server_address[1]
        run = bitbucket_stack.run_pipe(bitbucket_clone, bitbucket_variables(
            bitbucket_stack, bitbucket_world, IMAGE=bitbucket_stack.image(APP),
            SCRIPT=f"printf 'GET /health HTTP/1.0\\r\\n\\r\\n' | nc -w 10 host.docker.internal {port} > reply.txt",
        ), step_token(bitbucket_world))
    finally:
        service.shutdown()
        service.server_close()
    assert run.exit_code == 0, run.log
    assert (bitbucket_clone / "reply.txt").read_bytes().endswith(b"\r\n\r\nstep-service-ok\n")
    [caller] = service.callers
    bridge = ipaddress.ip_network(f"{bitbucket_stack.service.address}/24", strict=False)
    assert ipaddress.ip_address(caller) in bridge and caller != bitbucket_stack.service.address, "a container on the bridge"


@e2e
def test_host_network_is_refused_in_one_line(bitbucket_stack, bitbucket_world, bitbucket_clone):
    run = bitbucket_stack.run_pipe(bitbucket_clone, bitbucket_variables(
        bitbucket_stack, bitbucket_world, IMAGE=bitbucket_stack.image(APP), NETWORK="host", SCRIPT="echo never",
    ), step_token(bitbucket_world))
    assert run.exit_code == 1
    [failure] = [line for line in run.stdout.splitlines() if "✖" in line]
    assert "NETWORK" in failure and "cannot share the host's network namespace when user namespaces are enabled" in failure
    assert "Traceback" not in run.log and "never" not in run.stdout
    assert not bitbucket_stack.run_containers(bitbucket_clone)


@e2e
@pytest.mark.parametrize("options, refusal", [
    (lambda clone: {"volumes": {"/etc": {"bind": "/host-etc", "mode": "ro"}}}, authz_plugin.BIND_OUTSIDE_CLONE),
    (lambda clone: {"volumes": {f"{clone}/../../..": {"bind": "/up", "mode": "ro"}}}, authz_plugin.BIND_OUTSIDE_CLONE),
    (lambda clone: {"volumes": {"cache": {"bind": "/cache", "mode": "rw"}}}, authz_plugin.BIND_OUTSIDE_CLONE),
    (lambda clone: {"privileged": True}, authz_plugin.PRIVILEGED),
    (lambda clone: {"mounts": [Mount("/work", str(clone), type="bind")]}, authz_plugin.MOUNTS),
    (lambda clone: {"security_opt": ["no-new-privileges"]}, authz_plugin.SECURITY_OPT),
    (lambda clone: {"volumes": {str(clone): {"bind": str(clone), "mode": "rw"}}}, None),
], ids=["bind-outside", "bind-dotdot", "named-volume", "privileged", "mounts", "security-opt", "bind-clone-allowed"])
def test_the_authorization_plugin_answers_as_bitbucket(bitbucket_stack, bitbucket_clone, options, refusal):
    """Bitbucket's own texts, through the daemon, for a client that is not the pipe (the docker SDK)."""
    create = lambda: bitbucket_stack.dc.containers.create(  # noqa: E731
        bitbucket_stack.busybox, ["true"], labels={"pipe.google-cloud-keyless": "authz-test"}, **options(bitbucket_clone))
    if refusal is None:
        create().remove(force=True)
        return
    with pytest.raises(docker.errors.APIError) as refused:
        create()
    assert refused.value.response.status_code == 403
    assert refused.value.explanation == DENIED + refusal


# --- the plugin's rules, without a daemon -----------------------------------------------------------

def _create(host_config: dict, uri: str = "/v1.41/containers/create?name=x") -> dict:
    body = base64.b64encode(json.dumps({"Image": "x", "HostConfig": host_config}).encode()).decode()
    return {"RequestMethod": "POST", "RequestUri": uri, "RequestBody": body}


def test_plugin_allows_the_clone_and_below_only(tmp_path):
    root = tmp_path / "clones"
    (root / "a" / "sub").mkdir(parents=True)
    (root / "a" / "escape").symlink_to("/etc")
    (tmp_path / "clones-evil").mkdir()
    allowed = [f"{root}/a:{root}/a", f"{root}/a/sub:/x:ro", f"{root}:/all"]
    refused = [f"{root}/a/escape:/x", f"{root}/a/../../clones-evil:/x", f"{tmp_path}/clones-evil:/x", "named:/x", "/:/host"]
    assert [authz_plugin.decide(_create({"Binds": [b]}), str(root)) for b in allowed] == [None] * len(allowed)
    assert {authz_plugin.decide(_create({"Binds": [b]}), str(root)) for b in refused} == {authz_plugin.BIND_OUTSIDE_CLONE}


def test_plugin_judges_only_container_creation_and_fails_closed():
    assert authz_plugin.decide(_create({"Privileged": True}), "/c") == authz_plugin.PRIVILEGED
    assert authz_plugin.decide(_create({"Privileged": True}, uri="/containers/create"), "/c") == authz_plugin.PRIVILEGED
    assert authz_plugin.decide(_create({"Privileged": True}, uri="/v1.41/containers/abc/start"), "/c") is None
    assert authz_plugin.decide({"RequestMethod": "GET", "RequestUri": "/v1.41/containers/json"}, "/c") is None
    no_body = {"RequestMethod": "POST", "RequestUri": "/v1.41/containers/create"}
    assert authz_plugin.decide(no_body, "/c") == authz_plugin.UNREADABLE
