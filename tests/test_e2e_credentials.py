"""End-to-end: credentials for the rest of the step, token options, ID tokens, GOOGLE_OIDC_CONFIG_FILE and
credentials inside the run container — all through the real image, daemon, registry and the emulator."""

import json
import os
import stat
import subprocess

import jwt
import pytest
from google.auth import identity_pool, impersonated_credentials
from google.auth.transport.requests import Request

from tests.conftest import APP_IMAGE
from tests.support import harness
from tests.support.emulator import AR_WRITER, TOKEN_CREATOR, WORKLOAD_IDENTITY_USER, ServiceAccount
from tests.support.figures import probe
from tests.support.pipe_runs import STORAGE, build_image, exported, step_token, variables

pytestmark = pytest.mark.e2e

def image_with_user(live_stack, tmp_path, user: str, name: str) -> str:
    """busybox with `USER <user>`, pushed to the private registry; its reference there."""
    return build_image(live_stack, tmp_path, f"USER {user}", name)


def test_export_credentials_for_google_clients_and_docker_push(live_stack, world, clone):
    sa = world.labels["service_account"]
    world.grant_repository(world.labels["repository"], AR_WRITER, f"serviceAccount:{sa}")
    run = live_stack.run_pipe(clone, variables(
        world, SERVICE_ACCOUNT=sa, EXPORT_CREDENTIALS="true", IMAGE=APP_IMAGE, ACTION="auth",
        BITBUCKET_PIPE_STORAGE_DIR=str(clone / STORAGE),
    ), step_token(world))
    assert run.exit_code == 0, run.output
    directory = exported(clone)
    assert f"source {directory}/env" in run.stderr
    assert "never declare" in run.stderr  # the secrets warning
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = [p for p in directory.rglob("*") if p.is_file()]
    assert {p.name for p in files} == {"oidc-token", "credentials.json", "config.json", "access-token", "env"}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)

    # A real google-auth client loads the exported file and refreshes against the emulator.
    credentials = identity_pool.Credentials.from_file(str(directory / "credentials.json"),
                                                      scopes=["https://www.googleapis.com/auth/cloud-platform"])
    credentials.refresh(Request())
    assert live_stack.emulator.token_info(credentials.token).principal.email == sa

    env = dict(line.removeprefix("export ").split("=", 1) for line in (directory / "env").read_text().splitlines())
    assert env["GOOGLE_APPLICATION_CREDENTIALS"].strip("'") == str(directory / "credentials.json")
    assert env["GOOGLE_CLOUD_PROJECT"] == "acme-ci"  # quoted only where the shell needs it (shlex.quote)

    # The docker CLI, pointed at the exported config, pushes to the emulated Artifact Registry.
    pushed = "127.0.0.1:5000/acme-ci/private/app:pushed-by-cli"
    live_stack.dc.images.get(live_stack.busybox).tag(pushed)
    cli = subprocess.run(["docker", "push", pushed], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "DOCKER_CONFIG": env["DOCKER_CONFIG"].strip("'"), "DOCKER_HOST": live_stack.host})
    assert cli.returncode == 0, cli.stderr
    pushes = [r for r in live_stack.emulator.requests if r.route == "realm" and "push" in str(r.query)]
    assert pushes and all(r.status == 200 for r in pushes)


def test_delegation_chain_lifetime_and_request_reason_reach_iam(live_stack, world, clone):
    target = world.service_account(world.labels["service_account"])
    hop = ServiceAccount("deploy-hop@acme-ci.iam.gserviceaccount.com", target.project_number)
    hop.grant(WORKLOAD_IDENTITY_USER, world.providers[0].principal_set("repository_uuid", world.labels["repository_uuid"]))
    target.bindings[WORKLOAD_IDENTITY_USER] = []
    target.grant(TOKEN_CREATOR, hop.member)
    world.service_accounts.append(hop)
    run = live_stack.run_pipe(clone, variables(
        world, SERVICE_ACCOUNT=target.email, DELEGATES=[hop.email], ACCESS_TOKEN_LIFETIME="1800s",
        REQUEST_REASON="ticket-42", EXPORT_CREDENTIALS="true",
    ), step_token(world))
    assert run.exit_code == 0, run.output
    iam = [r for r in live_stack.emulator.requests if r.route == "iam"]
    assert iam[0].body["delegates"] == [f"projects/-/serviceAccounts/{hop.email}"]
    assert iam[0].body["lifetime"] == "1800s"
    assert {r.request_reason for r in live_stack.emulator.requests} == {"ticket-42"}

    # The exported file carries the same chain, and google-auth follows it.
    info = json.loads((exported(clone) / "credentials.json").read_text())
    assert info["type"] == "impersonated_service_account" and info["delegates"] == iam[0].body["delegates"]
    source = identity_pool.Credentials.from_info(info["source_credentials"])
    chained = impersonated_credentials.Credentials(
        source_credentials=source, target_principal=target.email, delegates=info["delegates"],
        target_scopes=["https://www.googleapis.com/auth/cloud-platform"],
        iam_endpoint_override=info["service_account_impersonation_url"],
    )
    chained.refresh(Request())
    assert live_stack.emulator.token_info(chained.token).principal.email == target.email


def test_lifetime_over_an_hour_is_explained(live_stack, world, clone):
    run = live_stack.run_pipe(clone, variables(world, SERVICE_ACCOUNT=world.labels["service_account"],
                                               ACCESS_TOKEN_LIFETIME="7200s"), step_token(world))
    assert run.exit_code == 1
    assert "constraints/iam.allowServiceAccountCredentialLifetimeExtension" in run.stdout


def test_id_token_with_audience_and_email(live_stack, world, clone):
    audience = "https://hello-abc123-uc.a.run.app"
    run = live_stack.run_pipe(clone, variables(
        world, SERVICE_ACCOUNT=world.labels["service_account"], ID_TOKEN_AUDIENCE=audience,
        ID_TOKEN_INCLUDE_EMAIL="true", EXPORT_CREDENTIALS="true",
    ), step_token(world))
    assert run.exit_code == 0, run.output
    token_file = exported(clone) / "id-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    claims = jwt.decode(token_file.read_text(), options={"verify_signature": False})
    assert claims["aud"] == audience and claims["email"] == world.labels["service_account"]
    assert "GOOGLE_ID_TOKEN_FILE" in (exported(clone) / "env").read_text()


def test_google_oidc_config_file_in_gcloud_format(live_stack, world, clone):
    sa = world.labels["service_account"]
    config = {  # exactly what `gcloud iam workload-identity-pools create-cred-config` writes
        "universe_domain": "googleapis.com",
        "type": "external_account",
        "audience": world.labels["audience"],
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": "https://sts.googleapis.com/v1/token",
        "credential_source": {"file": "/path/to/oidc.jwt"},
        "service_account_impersonation_url":
            f"https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{sa}:generateAccessToken",
    }
    (clone / "gcp-cred.json").write_text(json.dumps(config, indent=2))
    # Only the endpoints come from the variables (the emulator stands in for Google's hosts; a file in the repository
    # cannot choose another host): the provider and the service account come from the file.
    endpoints = {name: variables(world)[name] for name in ("STS_ENDPOINT", "IAM_CREDENTIALS_ENDPOINT", "REGISTRIES")}
    run = live_stack.run_pipe(clone, {"GOOGLE_OIDC_CONFIG_FILE": "gcp-cred.json", "IMAGE": APP_IMAGE,
                                      "SCRIPT": "echo configured", **endpoints}, step_token(world))
    assert run.exit_code == 0, run.output
    assert f"as {sa}" in run.stdout and "configured" in run.stdout


def test_credentials_inside_the_run_container(live_stack, world, clone):
    """A real google-auth client inside the run container refreshes with the mounted files."""
    image = "127.0.0.1:5000/acme-ci/private/python-tools:1"
    harness.push_image(live_stack, live_stack.pipe_image, image)
    script = (
        "test ! -w /var/run/google-cloud/credentials.json || { echo writable; exit 3; }\n"
        "/opt/venv/bin/python3 -c 'import google.auth.identity_pool as p, google.auth.transport.requests as r, os\n"
        "c = p.Credentials.from_file(os.environ[\"GOOGLE_APPLICATION_CREDENTIALS\"], "
        "scopes=[\"https://www.googleapis.com/auth/cloud-platform\"])\n"
        "c.refresh(r.Request()); print(\"inside-ok\", c.expiry is not None)'"
    )
    run = live_stack.run_pipe(clone, variables(
        world, SERVICE_ACCOUNT=world.labels["service_account"], IMAGE=image, GOOGLE_CREDENTIALS_IN_CONTAINER="true",
        SCRIPT=script, NETWORK="host",  # the emulator listens on the host's loopback
    ), step_token(world))
    assert run.exit_code == 0, run.output
    assert "inside-ok True" in run.stdout
    assert not (clone / STORAGE / "gcp-run").exists(), "the shared files must be removed when the container exits"


def test_credentials_reach_a_non_root_image_user(live_stack, world, clone, tmp_path):
    """An image with `USER 1000` can read the mounted files; they stay 0600."""
    image = image_with_user(live_stack, tmp_path, "1000:1000", "nonroot")
    script = ('[ "$(id -u)" = 1000 ]\n'
              'grep -q external_account "$GOOGLE_APPLICATION_CREDENTIALS"\n'
              'cat /var/run/google-cloud/oidc-token > /dev/null\n'
              'stat -c %a /var/run/google-cloud/credentials.json')
    run = live_stack.run_pipe(clone, variables(
        world, SERVICE_ACCOUNT=world.labels["service_account"], IMAGE=image, GOOGLE_CREDENTIALS_IN_CONTAINER="true",
        SCRIPT=script,
    ), step_token(world))
    assert run.exit_code == 0, run.output
    assert "600" in run.stdout


# ---------------------------------------------------------------- a hostile clone, through the real pipe

def test_a_symlinked_bitbucket_dir_never_gets_the_secrets(live_stack, world, clone):
    """`.bitbucket` committed as a link into a directory the step publishes (artifacts): the pipe refuses."""
    published = clone / "dist"
    published.mkdir()
    (clone / ".bitbucket").symlink_to("dist", target_is_directory=True)
    with probe("e2e: .bitbucket links into the artifacts"):
        run = live_stack.run_pipe(clone, variables(world, SERVICE_ACCOUNT=world.labels["service_account"], EXPORT_CREDENTIALS="true"),
                                  step_token(world))
        assert run.exit_code == 1
        assert f"✖ {clone}/.bitbucket is a symbolic link, where the pipe keeps its credential files" in run.stdout
        assert "Unexpected error" not in run.output and "Traceback" not in run.output
        assert not list(published.iterdir())


def test_a_file_where_the_export_dir_goes_is_one_line(live_stack, world, clone):
    (clone / STORAGE).mkdir(parents=True)
    (clone / STORAGE / "gcp").write_text("committed by mistake\n")
    with probe("e2e: a file at the export dir"):
        run = live_stack.run_pipe(clone, variables(world, SERVICE_ACCOUNT=world.labels["service_account"], EXPORT_CREDENTIALS="true"),
                                  step_token(world))
        assert run.exit_code == 1
        lines = [line for line in run.stdout.splitlines() if "✖" in line]
        assert lines == [f"\x1b[31m✖ {clone / STORAGE / 'gcp'} is not a directory, where the pipe keeps its credential files: remove it "
                         "from the repository (the pipe never writes secrets through links or over files).\x1b[0m"]
        assert (clone / STORAGE / "gcp").read_text() == "committed by mistake\n"


def test_an_image_user_no_container_can_run_as_is_one_line_and_leaves_no_token(live_stack, world, clone, tmp_path):
    image = image_with_user(live_stack, tmp_path, "99999999999", "baduser")
    with probe("e2e: USER 99999999999"):
        run = live_stack.run_pipe(clone, variables(
            world, SERVICE_ACCOUNT=world.labels["service_account"], IMAGE=image, GOOGLE_CREDENTIALS_IN_CONTAINER="true", SCRIPT="true",
        ), step_token(world))
        assert run.exit_code == 1
        assert "✖ The image's USER 99999999999 is no user a container can run as" in run.stdout
        assert "Unexpected error" not in run.output
        assert not (clone / STORAGE / "gcp-run").exists()
        assert not [p for p in clone.rglob("*") if p.is_file()], "no file holding a token may survive"
        assert not live_stack.run_containers(clone)
