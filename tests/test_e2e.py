"""End-to-end: the real pipe image, run as Bitbucket runs it, against a real daemon and registry and the
Google emulator. Every run is also scanned for leaked tokens (harness.Stack.run_pipe)."""

import docker
import pytest

from pipe import service_accounts
from tests.conftest import APP_IMAGE, OTHER_IMAGE
from tests.support.emulator import AR_READER, WORKLOAD_IDENTITY_USER
from tests.support.pipe_runs import build_image, step_token, variables

pytestmark = pytest.mark.e2e

def test_run_with_impersonation_writes_into_the_clone_dir(live_stack, world, clone):
    (clone / "input.txt").write_text("from the clone\n")
    live_stack.forget_image(APP_IMAGE)
    run = live_stack.run_pipe(clone, variables(
        world, SERVICE_ACCOUNT=world.labels["service_account"], IMAGE=APP_IMAGE,
        ENV=["GREETING=hello", "BITBUCKET_BRANCH"],
        SCRIPT='cat input.txt > output.txt\necho "$GREETING from $BITBUCKET_BRANCH in $(pwd)" >> output.txt\necho ran-ok',
    ), step_token(world))
    assert run.exit_code == 0, run.output
    assert (clone / "output.txt").read_text() == f"from the clone\nhello from main in {clone}\n"
    assert "ran-ok" in run.stdout
    assert "as image-puller@acme-ci.iam.gserviceaccount.com" in run.stdout
    iam_calls = [r for r in live_stack.emulator.requests if r.route == "iam"]
    assert len(iam_calls) == 1 and iam_calls[0].status == 200
    assert not live_stack.run_containers(clone)


def test_direct_federation_pull(live_stack, world, clone):
    member = world.providers[0].principal_set("repository_uuid", world.labels["repository_uuid"])
    world.grant_repository(world.labels["repository"], AR_READER, member)
    live_stack.forget_image(APP_IMAGE)
    run = live_stack.run_pipe(clone, variables(world, IMAGE=APP_IMAGE), step_token(world))
    assert run.exit_code == 0, run.output
    assert f"Pulled {APP_IMAGE}" in run.stdout
    assert live_stack.dc.images.get(APP_IMAGE)
    assert not [r for r in live_stack.emulator.requests if r.route == "iam"], "direct federation must not impersonate"


def test_auth_only(live_stack, world, clone):
    run = live_stack.run_pipe(clone, variables(world, SERVICE_ACCOUNT=world.labels["service_account"]), step_token(world))
    assert run.exit_code == 0, run.output
    assert "Authenticated to Google Cloud as image-puller@acme-ci.iam.gserviceaccount.com" in run.stdout
    assert [r.route for r in live_stack.emulator.requests] == ["sts", "iam"]


def test_missing_token_names_oidc_true(live_stack, world, clone):
    run = live_stack.run_pipe(clone, variables(world), token="")
    assert run.exit_code == 1
    assert "add `oidc: true` to the step" in run.stdout
    assert "Traceback" not in run.output
    assert live_stack.emulator.requests == []


def test_wrong_audience(live_stack, world, clone):
    run = live_stack.run_pipe(clone, variables(world), step_token(world, aud="https://example.com/other"))
    assert run.exit_code == 1
    assert "has audience https://example.com/other, which provider acme does not allow" in run.stdout
    assert "--allowed-audiences=https://example.com/other" in run.stdout


def test_issuer_mismatch(live_stack, world, clone):
    from tests.support.emulator import Issuer

    other = Issuer("other-workspace")
    world.issuers.append(other)
    run = live_stack.run_pipe(clone, variables(world), other.mint(world.labels["repository_uuid"]))
    assert run.exit_code == 1
    assert f"was issued by {other.iss}" in run.stdout
    assert f"--issuer-uri={other.iss}" in run.stdout


def test_expired_token(live_stack, world, clone):
    import time

    run = live_stack.run_pipe(clone, variables(world), step_token(world, iat=int(time.time()) - 7200, lifetime=3600))
    assert run.exit_code == 1
    assert "OIDC token (BITBUCKET_STEP_OIDC_TOKEN) expired" in run.stdout and "run this pipe earlier in the step" in run.stdout


def test_token_without_iat_is_explained_from_googles_answer(live_stack, world, clone):
    run = live_stack.run_pipe(clone, variables(world), step_token(world, drop_claims=("iat",)))
    assert run.exit_code == 1
    assert "expired or not yet valid" in run.stdout


def test_attribute_condition_rejects_another_repository(live_stack, world, clone):
    token = world.issuer().mint("{11111111-2222-4333-8444-555555555555}")
    run = live_stack.run_pipe(clone, variables(world), token)
    assert run.exit_code == 1
    assert "attribute condition rejected this step (repositoryUuid {11111111-2222-4333-8444-555555555555}" in run.stdout
    assert "--attribute-condition=" in run.stdout


def test_service_account_without_workload_identity_user(live_stack, world, clone):
    sa = world.service_account(world.labels["service_account"])
    sa.bindings[WORKLOAD_IDENTITY_USER] = []
    run = live_stack.run_pipe(clone, variables(world, SERVICE_ACCOUNT=sa.email), step_token(world))
    assert run.exit_code == 1
    assert f"may not impersonate {sa.email}" in run.stdout
    assert f"add-iam-policy-binding {service_accounts.resource_name(sa.email)} --role=roles/iam.workloadIdentityUser" in run.stdout
    assert f"attribute.repository_uuid/{world.labels['repository_uuid']}" in run.stdout


def test_repository_without_reader_grant(live_stack, world, clone):
    live_stack.forget_image(OTHER_IMAGE)
    run = live_stack.run_pipe(clone, variables(world, SERVICE_ACCOUNT=world.labels["service_account"], IMAGE=OTHER_IMAGE),
                              step_token(world))
    assert run.exit_code == 1
    assert "artifactregistry.repositories.downloadArtifacts" in run.stdout
    assert ("add-iam-policy-binding secret --project=acme-ci --location=us --role=roles/artifactregistry.reader "
            "--member=serviceAccount:image-puller@acme-ci.iam.gserviceaccount.com") in run.stdout


def test_unknown_image_tag(live_stack, world, clone):
    image = APP_IMAGE.replace(":1", ":no-such-tag")
    run = live_stack.run_pipe(clone, variables(world, SERVICE_ACCOUNT=world.labels["service_account"], IMAGE=image),
                              step_token(world))
    assert run.exit_code == 1
    assert f"Image {image} was not found: check the tag or digest" in run.stdout


def test_registry_outside_google_is_refused_before_any_token_exists(live_stack, world, clone):
    run = live_stack.run_pipe(clone, {**variables(world, IMAGE=APP_IMAGE), "REGISTRIES": ""}, step_token(world))
    assert run.exit_code == 1
    assert "127.0.0.1:5000, which is not a Google registry" in run.stdout
    assert "add '127.0.0.1:5000' to REGISTRIES" in run.stdout
    assert live_stack.emulator.requests == [], "no token may be minted for a refused registry"


def test_script_exit_code_is_propagated_and_container_removed(live_stack, world, clone):
    run = live_stack.run_pipe(clone, variables(
        world, SERVICE_ACCOUNT=world.labels["service_account"], IMAGE=APP_IMAGE, SCRIPT="echo before\nexit 7\necho never",
    ), step_token(world))
    assert run.exit_code == 7
    assert "before" in run.stdout and "never" not in run.stdout
    assert "exited with code 7" in run.stdout
    assert not live_stack.run_containers(clone)


def test_a_script_stops_at_its_first_failing_line(live_stack, world, clone):
    """`sh -e`: a failing command that is not the last line ends the script, with its status."""
    run = live_stack.run_pipe(clone, variables(
        world, SERVICE_ACCOUNT=world.labels["service_account"], IMAGE=APP_IMAGE,
        SCRIPT="echo first > first.txt\nfalse\necho second > second.txt",
    ), step_token(world))
    assert run.exit_code == 1
    assert (clone / "first.txt").is_file() and not (clone / "second.txt").exists()
    assert "exited with code 1" in run.stdout


def test_run_without_a_script_runs_the_images_command(live_stack, world, clone, tmp_path):

    image = build_image(live_stack, tmp_path, 'CMD ["sh", "-c", "echo the-image-cmd > cmd.txt"]', "with-cmd")
    run = live_stack.run_pipe(clone, variables(world, SERVICE_ACCOUNT=world.labels["service_account"], IMAGE=image,
                                               ACTION="run"), step_token(world))
    assert run.exit_code == 0, run.output
    assert (clone / "cmd.txt").read_text() == "the-image-cmd\n"


def test_network_none_and_a_user_defined_network(live_stack, world, clone):
    """NETWORK none gives the container loopback only; a user-defined network gives it that network's interface."""
    network = live_stack.dc.networks.create(f"keyless-test-{clone.parent.name[-20:]}", driver="bridge")
    try:
        for name, expect in (("none", "lo"), (network.name, "eth0")):
            run = live_stack.run_pipe(clone, variables(
                world, SERVICE_ACCOUNT=world.labels["service_account"], IMAGE=APP_IMAGE, NETWORK=name,
                SCRIPT="ls /sys/class/net | tr '\\n' ' ' | sed 's/^/IFACES[/;s/$/]/'; echo",
            ), step_token(world))
            assert run.exit_code == 0, run.output
            interfaces = run.stdout.split("IFACES[", 1)[1].split("]", 1)[0].split()
            assert expect in interfaces and (name != "none" or interfaces == ["lo"]), interfaces
    finally:
        network.remove()


def test_setup_and_doctor_change_nothing_and_run_nothing(live_stack, world, clone):
    """With IMAGE, SCRIPT, COMMAND and EXPORT_CREDENTIALS all set: no pull, no container, no file, no script."""
    storage = clone / ".bitbucket/pipelines/generated/pipeline/pipes/keyless-gcp/google-cloud-keyless"
    live_stack.forget_image(APP_IMAGE)
    for action in ("setup", "doctor"):
        run = live_stack.run_pipe(clone, variables(
            world, SERVICE_ACCOUNT=world.labels["service_account"], IMAGE=APP_IMAGE, ACTION=action, EXPORT_CREDENTIALS="true",
            SCRIPT="echo ran > ran.txt", BITBUCKET_PIPE_STORAGE_DIR=str(storage),
        ), step_token(world))
        assert run.exit_code == 0, run.output
        assert sorted(p.name for p in clone.iterdir()) == [], list(clone.iterdir())
        assert not live_stack.run_containers(clone)
        with pytest.raises(docker.errors.ImageNotFound):
            live_stack.dc.images.get(APP_IMAGE)
    assert [r.route for r in live_stack.emulator.requests if r.route in ("sts", "iam")]  # the doctor did ask Google


def test_command_exec_form(live_stack, world, clone):
    run = live_stack.run_pipe(clone, variables(
        world, SERVICE_ACCOUNT=world.labels["service_account"], IMAGE=APP_IMAGE, COMMAND=["echo", "exec form; no shell"],
    ), step_token(world))
    assert run.exit_code == 0, run.output
    assert "exec form; no shell" in run.stdout


def test_bad_provider_fails_before_any_network_call(live_stack, world, clone):
    run = live_stack.run_pipe(clone, {**variables(world), "WORKLOAD_IDENTITY_PROVIDER": "my-pool/my-provider"}, step_token(world))
    assert run.exit_code == 1
    assert "projects/<PROJECT_NUMBER>/locations/global/workloadIdentityPools/<POOL_ID>/providers/<PROVIDER_ID>" in run.stdout
    assert live_stack.emulator.requests == []


def test_debug_output_never_contains_a_token(live_stack, world, clone):
    run = live_stack.run_pipe(clone, variables(
        world, SERVICE_ACCOUNT=world.labels["service_account"], IMAGE=APP_IMAGE, SCRIPT="true", DEBUG="true",
    ), step_token(world))
    assert run.exit_code == 0, run.output
    assert "DEBUG" in run.stderr  # debug really was on; run_pipe's leak scan did the rest


def test_doctor_on_a_healthy_setup_checks_every_stage(live_stack, world, clone):
    run = live_stack.run_pipe(clone, variables(world, ACTION="doctor", SERVICE_ACCOUNT=world.labels["service_account"],
                                               IMAGE=APP_IMAGE), step_token(world))
    assert run.exit_code == 0, run.output
    assert "✖" not in run.stdout and run.stdout.count("✔") >= 7, run.stdout
    assert {r.route for r in live_stack.emulator.requests} == {"sts", "iam", "realm"}  # the real registry's challenge led to the realm


def test_doctor_names_each_broken_stage_with_its_fix(live_stack, world, clone):
    sa = world.service_account(world.labels["service_account"])
    sa.bindings[WORKLOAD_IDENTITY_USER] = []
    run = live_stack.run_pipe(clone, variables(world, ACTION="doctor", SERVICE_ACCOUNT=sa.email, IMAGE=APP_IMAGE),
                              step_token(world))
    assert run.exit_code == 1
    assert "✖" in run.stdout and f"add-iam-policy-binding {service_accounts.resource_name(sa.email)} --role=roles/iam.workloadIdentityUser" in run.stdout
    assert "doctor found problems" in run.stdout


def test_setup_prints_gcloud_and_terraform_from_the_token(live_stack, world, clone):
    token = step_token(world)
    run = live_stack.run_pipe(clone, variables(world, ACTION="setup", SERVICE_ACCOUNT=world.labels["service_account"],
                                               IMAGE="us-docker.pkg.dev/acme-ci/private/app:1"), token)
    assert run.exit_code == 0, run.output
    assert "gcloud iam workload-identity-pools providers create-oidc" in run.stdout
    assert 'resource "google_iam_workload_identity_pool_provider"' in run.stdout
    assert world.labels["repository_uuid"] in run.stdout and world.issuer().iss in run.stdout
    assert live_stack.emulator.requests == [], "setup is offline"


@pytest.mark.parametrize("change, says", [
    ({"COMMAND": ["/nonexistent-binary"]}, "COMMAND's program"),
    ({"NETWORK": "no-such-network", "SCRIPT": "true"}, "no such network"),
], ids=["missing program", "missing network"])
def test_what_the_daemon_refuses_when_starting_the_container_is_one_line(live_stack, world, clone, change, says):
    """The daemon checks the command, the user and the network when it starts the container (not when it creates
    it): its refusal is one bounded line saying what to change, never an unexpected error, and no container is left."""
    run = live_stack.run_pipe(clone, variables(world, SERVICE_ACCOUNT=world.labels["service_account"], IMAGE=APP_IMAGE, **change),
                              step_token(world))
    assert run.exit_code == 1, run.output
    [line] = [line for line in run.stdout.splitlines() if "✖" in line]
    assert says in line and "Unexpected error" not in line and len(line) < 800, line
    assert live_stack.run_containers(clone) == []
