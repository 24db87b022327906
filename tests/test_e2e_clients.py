"""End-to-end: Google's own clients (gcloud, Python google-auth, Node google-auth-library) refresh with what
EXPORT_CREDENTIALS wrote, for each kind of export, through the endpoints the pipe was given: each token must be
one the emulator issued to the expected principal, through the URLs the exported files name."""

import json

import pytest

from tests.support import clients, google_tools
from tests.support.emulator import TOKEN_CREATOR, WORKLOAD_IDENTITY_USER, ServiceAccount
from tests.support.figures import record
from tests.support.pipe_runs import EMULATOR, exported, step_token, variables

pytestmark = pytest.mark.e2e

HOP = "deploy-hop@acme-ci.iam.gserviceaccount.com"
KINDS = ["service account", "direct federation", "delegates", "lifetime 1800s"]
CLIENTS = ["gcloud env", "gcloud login", "gcloud adc", "python", "node"]
TALLY: dict[str, int] = {"tokens": 0}


@pytest.fixture(scope="module", autouse=True)
def figures():
    google_tools.report_missing()
    yield
    record("google clients", f"{TALLY['tokens']} tokens from gcloud, google-auth and google-auth-library checked at the emulator")


def arrange(world, kind: str) -> tuple[dict, str | None]:
    """The pipe's variables for `kind`, and the service account the clients' tokens must belong to."""
    sa = world.labels["service_account"]
    if kind == "direct federation":
        return {"PROJECT_ID": "acme-ci"}, None
    if kind == "lifetime 1800s":
        return {"SERVICE_ACCOUNT": sa, "ACCESS_TOKEN_LIFETIME": "1800s"}, sa
    if kind == "delegates":  # the repository may only impersonate the hop, which may impersonate the target
        target = world.service_account(sa)
        hop = ServiceAccount(HOP, target.project_number)
        hop.grant(WORKLOAD_IDENTITY_USER, world.providers[0].principal_set("repository_uuid", world.labels["repository_uuid"]))
        target.bindings[WORKLOAD_IDENTITY_USER] = []
        target.grant(TOKEN_CREATOR, hop.member)
        world.service_accounts.append(hop)
        return {"SERVICE_ACCOUNT": sa, "DELEGATES": [HOP]}, sa
    return {"SERVICE_ACCOUNT": sa}, sa


def get_token(client: str, kind: str, env: dict[str, str]) -> tuple[str | None, str]:
    if client.startswith("gcloud") and google_tools.GCLOUD is None:
        pytest.skip("gcloud is not installed (reported in the figures)")
    if client == "node" and google_tools.NODE is None:
        pytest.skip("node is not installed (reported in the figures)")
    if client == "node" and not clients.node_installed():
        record("node clients", "!!! tests/node has no node_modules (run `make node`): Node's tests were SKIPPED !!!")
        pytest.skip("google-auth-library is not installed: run `make node`")
    if client == "gcloud env":
        return clients.gcloud_env_file(env)
    if client == "gcloud login":
        return clients.gcloud_login(env)
    if client == "gcloud adc":
        if kind == "delegates":
            pytest.skip("gcloud's ADC refuses the chain file, and its own chain ignores the IAM endpoint override (README)")
        return clients.gcloud_adc(env)
    if client == "node":
        return clients.node_default(env)
    if kind == "delegates":  # google-auth 2.63 refuses the chain file: the README's route
        return clients.python_snippet(clients.readme_snippet("Credentials for the rest of the step", "python"), env)
    return clients.python_default(env)


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("kind", KINDS)
def test_each_client_refreshes_with_each_export(live_stack, world, clone, kind, client):
    extra, sa = arrange(world, kind)
    run = live_stack.run_pipe(clone, variables(world, EXPORT_CREDENTIALS="true", **extra), step_token(world))
    assert run.exit_code == 0, run.output
    env = clients.sourced(exported(clone))
    live_stack.emulator.wait_idle()
    live_stack.emulator.reset_log()

    token, error = get_token(client, kind, env)
    assert token, f"{client} got no token: {error}"
    info = live_stack.emulator.token_info(token)
    assert info is not None, f"{client}'s token was not issued by the emulator"
    TALLY["tokens"] += 1
    requests = live_stack.emulator.requests
    exchanges = [r for r in requests if r.route == "sts"]
    assert exchanges and all(r.status == 200 and r.body["audience"] == world.labels["audience"] for r in exchanges)
    if sa is None:
        assert info.kind == "federated" and info.principal.pool == world.providers[0].pool
        assert not [r for r in requests if r.route == "iam"], "direct federation must not impersonate"
        return
    assert info.principal.email == sa
    minted = [r for r in requests if r.route == "iam" and r.status == 200]
    # Every client called the URL the file (or gcloud's endpoint override) names: the emulator, for this account.
    config = json.loads((exported(clone) / "credentials.json").read_text())
    assert config["service_account_impersonation_url"] == f"{EMULATOR}/v1/projects/-/serviceAccounts/{sa}:generateAccessToken"
    assert minted and {r.path for r in minted} == {f"/v1/projects/-/serviceAccounts/{sa}:generateAccessToken"}
    if kind == "delegates":
        assert all(r.body["delegates"] in ([HOP], [f"projects/-/serviceAccounts/{HOP}"]) for r in minted)
    if kind == "lifetime 1800s":
        assert all(r.body["lifetime"] == "1800s" for r in minted)
