"""ACTION: doctor, in-process against the Google emulator and a stub registry whose /v2/ challenge sends
clients to the emulator's token realm (what Artifact Registry's /v2/ does with its own /v2/token)."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipe import config, container, doctor, transport
from tests.support.emulator import AR_READER, repository_resource

REALM_SERVICE = "127.0.0.1:5000"  # the registry host typical_world() maps to location "us"


class _Challenge(BaseHTTPRequestHandler):
    """A registry's face as the doctor sees it: the /v2/ challenge, and manifests it serves to a bearer token
    (the token's validity is the realm's and the daemon's concern, tested end to end)."""

    protocol_version = "HTTP/1.1"
    manifests = {"/v2/acme-ci/private/app/manifests/1"}

    def do_GET(self):
        body = b'{"errors":[{"code":"UNAUTHORIZED","message":"not authenticated: No credential was supplied."}]}'
        self.send_response(401 if self.path == "/v2/" else 404)
        self.send_header("WWW-Authenticate", f'Bearer realm="{self.server.realm}",service="{REALM_SERVICE}"')
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self):
        bearer = (self.headers.get("Authorization") or "").startswith("Bearer ")
        self.send_response(401 if not bearer else 200 if self.path in self.manifests else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def registry_host(emulator):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Challenge)
    server.daemon_threads = True
    server.realm = f"{emulator.url}/v2/token"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def world(emu):
    return emu.world


@pytest.fixture
def docker_up(monkeypatch):
    """No daemon in unit tests: pretend one answers (the unreachable case uses the real client)."""
    monkeypatch.setattr(container, "connect", lambda: object())


def step_env(emu, registry_host, world, token="mint", **overrides) -> dict:
    if token == "mint":
        token = world.issuer().mint(world.labels["repository_uuid"])
    env = {
        "WORKLOAD_IDENTITY_PROVIDER": world.labels["provider"],
        "SERVICE_ACCOUNT": world.labels["service_account"],
        "IMAGE": f"{registry_host}/acme-ci/private/app:1",
        "REGISTRIES": f"{registry_host},{emu.url.removeprefix('http://')}",
        "STS_ENDPOINT": emu.url,
        "IAM_CREDENTIALS_ENDPOINT": emu.url,
        "BITBUCKET_STEP_OIDC_TOKEN": token,
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def diagnose(emu, env) -> tuple[bool, list[str]]:
    lines = []
    ok = doctor.run_doctor(config.load(env, Path.cwd()), env, transport.Transport(), out=lines.append)
    output = "\n".join(lines)
    for secret in emu.issued_tokens():
        assert secret not in output  # neither the step token nor anything Google issued
    return ok, lines


def line(lines: list[str], name: str) -> str:
    return next(text for text in lines if text[2:].startswith(name + ":"))


# ---------------------------------------------------------------- healthy

def test_healthy_setup_passes_every_check(emu, registry_host, world, docker_up, tmp_path):
    env = step_env(emu, registry_host, world, ID_TOKEN_AUDIENCE="https://api-abc123-ew.a.run.app", EXPORT_CREDENTIALS="true",
                   BITBUCKET_CLONE_DIR=str(tmp_path))
    ok, lines = diagnose(emu, env)
    assert ok, "\n".join(lines)
    checks = lines[1:-1]
    assert len(checks) == len(doctor.CHECKS) and all(text.startswith("✔ ") for text in checks), "\n".join(checks)
    assert lines[-1] == "All checks passed."
    assert f"✔ Provider name: {world.labels['provider']}" in lines
    assert "sub is" in line(lines, "Token not expired") and "of 127 bytes" in line(lines, "Token not expired")
    assert "got a token for repository:acme-ci/private/app:pull" in line(lines, "Registry pull token")
    assert "exists and serviceAccount:" in line(lines, "Image readable")
    assert "minted for audience https://api-abc123-ew.a.run.app" in line(lines, "ID token")
    assert "can be created" in line(lines, "Export folder") and list(tmp_path.iterdir()) == []  # checked, not created
    realm = [r for r in emu.requests if r.route == "realm"]
    assert [r.status for r in realm] == [200] and realm[0].query["scope"] == ["repository:acme-ci/private/app:pull"]
    assert realm[0].query["service"] == [REALM_SERVICE]


def test_healthy_direct_federation(emu, registry_host, world, docker_up):
    member = world.providers[0].principal_set("repository_uuid", world.labels["repository_uuid"])
    world.grant_repository(repository_resource("acme-ci", "us", "private"), AR_READER, member)
    ok, lines = diagnose(emu, step_env(emu, registry_host, world, SERVICE_ACCOUNT=None))
    assert ok, "\n".join(lines)
    assert line(lines, "Service account impersonation") == (
        "– Service account impersonation: not used: no SERVICE_ACCOUNT (direct federation)"
    )
    assert member in line(lines, "Registry pull token")


def test_without_image_only_google_is_checked(emu, registry_host, world):
    ok, lines = diagnose(emu, step_env(emu, registry_host, world, IMAGE=None))
    assert ok
    assert all(line(lines, name).startswith("– ") for name in ("Registry pull token", "Docker daemon"))


# ---------------------------------------------------------------- broken, one stage at a time

def test_missing_token(emu, registry_host, world, docker_up):
    ok, lines = diagnose(emu, step_env(emu, registry_host, world, token=None))
    assert not ok
    assert line(lines, "Step OIDC token").startswith("✖ Step OIDC token: This step has no OIDC token")
    assert "add `oidc: true` to the step" in line(lines, "Step OIDC token")
    for name in ("Token not expired", "STS token exchange", "Service account impersonation", "Registry pull token"):
        assert line(lines, name).startswith(f"– {name}: skipped")
    assert line(lines, "Docker daemon").startswith("✔")  # independent of the token
    assert lines[-1].startswith("1 check(s) failed")


def test_expired_token(emu, registry_host, world, docker_up):
    token = world.issuer().mint(world.labels["repository_uuid"], iat=int(time.time()) - 7200)
    ok, lines = diagnose(emu, step_env(emu, registry_host, world, token=token))
    assert not ok
    assert line(lines, "Step OIDC token").startswith("✔")
    assert "✖ Token not expired: The step's OIDC token (BITBUCKET_STEP_OIDC_TOKEN) expired" in line(lines, "Token not expired")
    assert line(lines, "STS token exchange").startswith("– STS token exchange: skipped")
    assert not [r for r in emu.requests if r.route == "sts"]


def test_wrong_audience(emu, registry_host, world, docker_up):
    token = world.issuer().mint(world.labels["repository_uuid"], aud="https://elsewhere.example")
    ok, lines = diagnose(emu, step_env(emu, registry_host, world, token=token))
    assert not ok
    sts = line(lines, "STS token exchange")
    assert sts.startswith("✖") and "audience https://elsewhere.example" in sts
    assert "--allowed-audiences=https://elsewhere.example" in sts
    assert line(lines, "Service account impersonation").startswith("– Service account impersonation: skipped")


def test_condition_rejects_the_repository(emu, registry_host, world, docker_up):
    token = world.issuer().mint("{6c7a0e1f-0000-4000-8000-000000000000}")
    ok, lines = diagnose(emu, step_env(emu, registry_host, world, token=token))
    assert not ok
    sts = line(lines, "STS token exchange")
    assert sts.startswith("✖") and "attribute condition rejected this step" in sts
    assert "--attribute-condition=" in sts
    assert line(lines, "Registry pull token").startswith("– Registry pull token: skipped")


def test_missing_workload_identity_user(emu, registry_host, world, docker_up):
    world.service_accounts[0].bindings.clear()
    ok, lines = diagnose(emu, step_env(emu, registry_host, world))
    assert not ok
    assert line(lines, "STS token exchange").startswith("✔")
    impersonation = line(lines, "Service account impersonation")
    assert impersonation.startswith("✖") and "--role=roles/iam.workloadIdentityUser" in impersonation
    assert f"attribute.repository_uuid/{world.labels['repository_uuid']}" in impersonation
    assert line(lines, "Registry pull token").startswith("– Registry pull token: skipped")


def test_missing_reader_grant(emu, registry_host, world, docker_up):
    world.repository_bindings.clear()
    ok, lines = diagnose(emu, step_env(emu, registry_host, world))
    assert not ok
    pull = line(lines, "Registry pull token")
    assert pull.startswith("✖") and "artifactregistry.repositories.downloadArtifacts" in pull
    assert "gcloud artifacts repositories add-iam-policy-binding private --project=acme-ci --location=us" in pull
    assert f"--role=roles/artifactregistry.reader --member=serviceAccount:{world.labels['service_account']}" in pull


def test_unreachable_docker(emu, registry_host, world, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    ok, lines = diagnose(emu, step_env(emu, registry_host, world))
    assert not ok
    docker = line(lines, "Docker daemon")
    assert docker.startswith("✖ Docker daemon: Cannot reach the step's Docker daemon") and "services: [docker]" in docker
    others = [text for text in lines[1:-1] if not text[2:].startswith("Docker daemon:")]
    assert all(text.startswith(("✔ ", "– ")) and ("not used" in text or text[0] == "✔") for text in others), "\n".join(others)
    assert len(others) == len(doctor.CHECKS) - 1


def test_registry_outside_the_allow_list_gets_no_token(emu, registry_host, world, docker_up):
    ok, lines = diagnose(emu, step_env(emu, registry_host, world, REGISTRIES=None))
    assert not ok
    assert "not a Google registry" in line(lines, "Registry may receive tokens")
    assert line(lines, "Registry pull token").startswith("– Registry pull token: skipped")
    assert not [r for r in emu.requests if r.route == "realm"]


def test_realm_on_a_host_outside_the_allow_list_gets_no_token(emu, registry_host, world, docker_up):
    ok, lines = diagnose(emu, step_env(emu, registry_host, world, REGISTRIES=registry_host))
    assert not ok
    pull = line(lines, "Registry pull token")
    assert pull.startswith("✖") and f"add '{emu.url.removeprefix('http://')}' to REGISTRIES" in pull
    assert not [r for r in emu.requests if r.route == "realm"]
