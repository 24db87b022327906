"""ACTION: setup: the plan from the step token's claims, its two renderings, and the proof that the plan,
loaded into the Google emulator, admits exactly this repository (branch, environment) through the pipe's
own exchange code."""

import re
import shlex
from pathlib import Path

import pytest
import requests

from pipe import config, credentials, oidc, parsers, setup_plan, transport
from pipe.errors import PipeError
from tests.support.emulator import Issuer, Provider, ServiceAccount, World, repository_resource
from tests.support.emulator.world import new_uuid

PROVIDER = "projects/123456789012/locations/global/workloadIdentityPools/bitbucket/providers/acme"
SA = "image-puller@acme-ci.iam.gserviceaccount.com"
IMAGE = "us-docker.pkg.dev/acme-ci/private/app:1"
REPO = "{0d6c1f43-6f39-4a35-9d1b-3b2f8c9e7a10}"
ENVIRONMENT = "{5b0e3c1e-8d2a-4f7e-9a41-2c6d9b1f0e22}"
ISSUER = Issuer("acme")  # one RSA key for the whole module keeps it fast


# ---------------------------------------------------------------- the plan in the emulator's world model

def plan_to_world(plan: setup_plan.Plan, issuer: Issuer) -> World:
    """Exactly what the rendered commands create: provider, SA binding, repository grant."""
    pv = plan.provider
    provider = Provider(
        project_number=pv.names.project_number,
        pool_id=pv.names.pool_id,
        provider_id=pv.names.provider_id,
        issuer_uri=pv.issuer_uri,
        allowed_audiences=list(pv.allowed_audiences),
        attribute_mapping=pv.mapping,  # the emulator refuses keys Google would refuse
        attribute_condition=pv.attribute_condition,
    )
    world = World(issuers=[issuer], providers=[provider])
    for binding in plan.service_account_bindings:
        account = world.service_account(binding.email)
        if account is None:
            account = ServiceAccount(binding.email, pv.names.project_number)
            world.service_accounts.append(account)
        account.grant(binding.role, binding.member)
    if plan.repository_grant:
        grant = plan.repository_grant
        world.grant_repository(repository_resource(grant.project, grant.location, grant.repository), grant.role, grant.member)
        world.registry_hosts[f"{grant.location}-docker.pkg.dev"] = grant.location
    return world


def variables(emu=None, **overrides) -> dict:
    env = {"WORKLOAD_IDENTITY_PROVIDER": PROVIDER, "SERVICE_ACCOUNT": SA, "IMAGE": IMAGE}
    if emu:
        env.update(STS_ENDPOINT=emu.url, IAM_CREDENTIALS_ENDPOINT=emu.url)
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def step_token(repository=REPO, **claims) -> oidc.StepToken:
    return oidc.read({"BITBUCKET_STEP_OIDC_TOKEN": ISSUER.mint(repository, **claims)})


def plan_for(restrict="repository", env=None, **claims) -> tuple[config.Config, oidc.StepToken, setup_plan.Plan]:
    cfg = config.load(env or variables(), Path.cwd())
    step = step_token(**claims)
    return cfg, step, setup_plan.build(cfg, step, parsers.restriction("SETUP_RESTRICT_TO", restrict))


def exchange(emu, step: oidc.StepToken, **overrides) -> credentials.Minted:
    cfg = config.load(variables(emu, **overrides), Path.cwd())
    return credentials.mint(cfg, step, transport.Transport())


def pull_token(emu, access_token: str, path: str) -> requests.Response:
    return requests.get(
        f"{emu.url}/v2/token",
        params={"service": "us-docker.pkg.dev", "scope": f"repository:{path}:pull"},
        auth=("oauth2accesstoken", access_token),
        timeout=10,
    )


# ---------------------------------------------------------------- SETUP_RESTRICT_TO

@pytest.mark.parametrize("value, branch, deployment", [
    (None, False, False), ("", False, False), ("repository", False, False), ("Branch", True, False),
    ("deployment", False, True), ("branch, deployment", True, True), ("repository,branch", True, False),
])
def test_restriction_values(value, branch, deployment):
    assert parsers.restriction("SETUP_RESTRICT_TO", value) == parsers.Restriction(branch, deployment)


def test_restriction_refuses_unknown_words_in_one_line():
    with pytest.raises(PipeError) as caught:
        parsers.restriction("SETUP_RESTRICT_TO", "everything")
    assert str(caught.value).startswith("SETUP_RESTRICT_TO is 'everything', but it must be 'repository' (the default)")
    assert "\n" not in str(caught.value)


# ---------------------------------------------------------------- the plan

def test_plan_from_claims_and_variables():
    _, step, plan = plan_for()
    pv = plan.provider
    assert (pv.names.project_number, pv.names.pool_id, pv.names.provider_id) == ("123456789012", "bitbucket", "acme")
    assert pv.issuer_uri == ISSUER.iss and pv.allowed_audiences == (ISSUER.default_audience,)
    assert pv.mapping == {
        "google.subject": "assertion.sub",
        "attribute.repository_uuid": "assertion.repositoryUuid",
        "attribute.workspace_uuid": "assertion.workspaceUuid",
        "attribute.deployment_environment_uuid": "assertion.deploymentEnvironmentUuid",
        "attribute.branch_name": "assertion.branchName",
    }
    assert pv.attribute_condition == (
        f"assertion.workspaceUuid == '{ISSUER.workspace_uuid}' && assertion.repositoryUuid == '{REPO}'"
    )
    member = f"principalSet://iam.googleapis.com/{pv.names.pool_name}/attribute.repository_uuid/{REPO}"
    assert plan.member == member
    assert plan.service_account_bindings == (setup_plan.ServiceAccountBinding(SA, "roles/iam.workloadIdentityUser", member),)
    assert plan.repository_grant == setup_plan.RepositoryGrant(
        "acme-ci", "us", "private", "roles/artifactregistry.reader", f"serviceAccount:{SA}"
    )
    assert "iamcredentials.googleapis.com" in plan.apis


def test_direct_federation_grants_the_repository_principal_set():
    _, _, plan = plan_for(env=variables(SERVICE_ACCOUNT=None))
    assert plan.service_account_bindings == ()
    assert plan.repository_grant.member == plan.member
    assert "iamcredentials.googleapis.com" not in plan.apis


def test_first_custom_audience_is_allowed():
    _, _, plan = plan_for(aud=["//iam.googleapis.com/" + PROVIDER, "https://other.example"])
    assert plan.provider.allowed_audiences == ("//iam.googleapis.com/" + PROVIDER,)


def test_image_outside_artifact_registry_becomes_a_note():
    _, _, plan = plan_for(env=variables(IMAGE="registry.example.com/team/app:1"))
    assert plan.repository_grant is None
    assert any("not an Artifact Registry path" in note for note in plan.notes)


@pytest.mark.parametrize("restrict, claims, missing", [
    ("deployment", {}, "deploymentEnvironmentUuid"),
    ("branch", {"drop_claims": ["branchName"]}, "branchName"),
    ("repository", {"drop_claims": ["workspaceUuid"]}, "workspaceUuid"),
])
def test_a_restriction_needs_its_claim(restrict, claims, missing):
    with pytest.raises(PipeError, match=f"has no {missing} claim"):
        plan_for(restrict, **claims)


# ---------------------------------------------------------------- the two renderings

def gcloud_commands(text: str) -> list[list[str]]:
    lines = [line for line in text.replace("\\\n", " ").splitlines() if line and not line.startswith("#")]
    return [shlex.split(line) for line in lines]


def flags(command: list[str]) -> dict[str, str]:
    return dict(arg[2:].split("=", 1) for arg in command if arg.startswith("--"))


def hcl_value(text: str, name: str) -> str:
    raw = re.search(rf'^\s*{name}\s*= "((?:[^"\\]|\\.)*)"$', text, re.M)[1]
    return re.sub(r"\\(.)", r"\1", raw).replace("$${", "${").replace("%%{", "%{")


def test_gcloud_and_terraform_render_the_same_plan():
    cfg, step, plan = plan_for("branch", branch="feature/it's \"quoted\" \\ $HOME ${x}")
    pv = plan.provider
    commands = gcloud_commands(setup_plan.to_gcloud(plan))
    provider = flags(next(c for c in commands if "create-oidc" in c))
    assert provider["attribute-condition"] == pv.attribute_condition
    assert provider["issuer-uri"] == pv.issuer_uri and provider["allowed-audiences"] == pv.allowed_audiences[0]
    assert dict(pair.split("=", 1) for pair in provider["attribute-mapping"].split(",")) == pv.mapping
    assert f"{pv.names.pool_name}/providers/acme" in next(c for c in commands if "create-oidc" in c)
    binding = next(c for c in commands if "service-accounts" in c)
    assert f"projects/acme-ci/serviceAccounts/{SA}" in binding
    assert flags(binding) == {"role": "roles/iam.workloadIdentityUser", "member": plan.member}
    reader = flags(next(c for c in commands if "artifacts" in c))
    assert reader == {"project": "acme-ci", "location": "us", "role": "roles/artifactregistry.reader", "member": f"serviceAccount:{SA}"}

    terraform = setup_plan.to_terraform(plan)
    assert hcl_value(terraform, "attribute_condition") == pv.attribute_condition
    assert hcl_value(terraform, "issuer_uri") == pv.issuer_uri
    assert f'allowed_audiences = ["{pv.allowed_audiences[0]}"]' in terraform
    for key, value in pv.attribute_mapping:
        assert re.search(rf'"{re.escape(key)}"\s+= "{re.escape(value)}"', terraform)
    assert f'member             = "{plan.member}"' in terraform
    assert f'service_account_id = "projects/acme-ci/serviceAccounts/{SA}"' in terraform
    for resource in ("google_iam_workload_identity_pool", "google_iam_workload_identity_pool_provider",
                     "google_service_account_iam_member", "google_artifact_registry_repository_iam_member"):
        assert f'resource "{resource}"' in terraform


@pytest.mark.parametrize("restrict", ["repository", "branch", "deployment", "branch,deployment"])
@pytest.mark.parametrize("sa", [SA, None])
@pytest.mark.parametrize("image", [IMAGE, None])
def test_secure_by_default(restrict, sa, image):
    """Never a provider without a condition, never a pool-wide principalSet, never the token."""
    cfg, step, plan = plan_for(restrict, env=variables(SERVICE_ACCOUNT=sa, IMAGE=image), deployment_environment_uuid=ENVIRONMENT)
    condition = plan.provider.attribute_condition
    assert f"assertion.workspaceUuid == '{ISSUER.workspace_uuid}'" in condition
    assert f"assertion.repositoryUuid == '{REPO}'" in condition
    output = setup_plan.render(cfg, step, parsers.restriction("SETUP_RESTRICT_TO", restrict))
    assert output.count("--attribute-condition=") == 1 and output.count("attribute_condition ") == 1
    assert not re.search(r"principalSet://\S*/\*|allUsers|allAuthenticatedUsers", output)
    for member in re.findall(r"principalSet://[^\s\"']+", output):
        assert member == plan.member
    assert step.value not in output and step.value.split(".")[1] not in output


def test_render_has_heading_then_gcloud_then_terraform():
    cfg, step, _ = plan_for("branch")
    output = setup_plan.render(cfg, step, parsers.Restriction(branch=True))
    assert output.index("Admits only:") < output.index("# gcloud") < output.index("# Terraform")
    assert "branch 'main'" in output and "SETUP_RESTRICT_TO: repository,branch" in output


# ---------------------------------------------------------------- the plan, loaded into the emulator

def test_plan_admits_this_repository_through_impersonation(emu):
    _, step, plan = plan_for()
    emu.world = plan_to_world(plan, ISSUER)
    minted = exchange(emu, step)
    assert minted.principal == f"serviceAccount:{SA}"
    assert pull_token(emu, minted.access_token, "acme-ci/private/app").status_code == 200
    assert pull_token(emu, minted.access_token, "acme-ci/other/app").status_code == 403


def test_plan_admits_this_repository_by_direct_federation(emu):
    _, step, plan = plan_for(env=variables(SERVICE_ACCOUNT=None), deployment_environment_uuid=ENVIRONMENT)
    emu.world = plan_to_world(plan, ISSUER)
    minted = exchange(emu, step, SERVICE_ACCOUNT=None)
    attributes = emu.token_info(minted.access_token).principal.attributes
    assert attributes == {
        "repository_uuid": REPO, "workspace_uuid": ISSUER.workspace_uuid,
        "deployment_environment_uuid": ENVIRONMENT, "branch_name": "main",
    }
    assert pull_token(emu, minted.access_token, "acme-ci/private/app").status_code == 200


def test_plan_rejects_another_repository(emu):
    _, _, plan = plan_for()
    emu.world = plan_to_world(plan, ISSUER)
    with pytest.raises(PipeError, match="attribute condition"):
        exchange(emu, step_token(new_uuid()))


def test_plan_rejects_another_workspace(emu):
    _, _, plan = plan_for()
    world = plan_to_world(plan, ISSUER)
    impostor = Issuer("acme", key=ISSUER.key, kid=ISSUER.kid)  # same issuer and key, other workspace UUID
    emu.world = world
    step = oidc.read({"BITBUCKET_STEP_OIDC_TOKEN": impostor.mint(REPO, aud=ISSUER.default_audience)})
    with pytest.raises(PipeError, match="attribute condition"):
        exchange(emu, step)


def test_branch_restriction_rejects_another_branch(emu):
    branch = "release/it's \"1\" \\ ${x}"  # CEL and shell escaping, evaluated by cel-python
    _, step, plan = plan_for("branch", branch=branch)
    emu.world = plan_to_world(plan, ISSUER)
    assert exchange(emu, step).principal == f"serviceAccount:{SA}"
    with pytest.raises(PipeError, match="attribute condition"):
        exchange(emu, step_token(branch="main"))


def test_deployment_restriction_rejects_another_environment(emu):
    _, step, plan = plan_for("deployment", deployment_environment_uuid=ENVIRONMENT)
    emu.world = plan_to_world(plan, ISSUER)
    assert exchange(emu, step).principal == f"serviceAccount:{SA}"
    with pytest.raises(PipeError, match="attribute condition"):
        exchange(emu, step_token(deployment_environment_uuid=new_uuid()))
    with pytest.raises(PipeError, match="attribute condition"):
        exchange(emu, step_token())  # not a deployment step at all


def test_repository_restriction_admits_any_branch_and_environment(emu):
    _, _, plan = plan_for()
    emu.world = plan_to_world(plan, ISSUER)
    assert exchange(emu, step_token(branch="feature/x", deployment_environment_uuid=ENVIRONMENT)).access_token


# ---------------------------------------------------------------- DELEGATES: the whole chain, and nothing wider

HOPS = ("ci-broker@shared-proj.iam.gserviceaccount.com", "deploy-hop@acme-ci.iam.gserviceaccount.com")


def test_delegates_plan_grants_every_hop_of_the_chain():
    _, _, plan = plan_for(env=variables(DELEGATES=",".join(HOPS)))
    assert [(b.email, b.role, b.member) for b in plan.service_account_bindings] == [
        (HOPS[0], "roles/iam.workloadIdentityUser", plan.member),
        (HOPS[1], "roles/iam.serviceAccountTokenCreator", f"serviceAccount:{HOPS[0]}"),
        (SA, "roles/iam.serviceAccountTokenCreator", f"serviceAccount:{HOPS[1]}"),
    ]
    gcloud = [c for c in gcloud_commands(setup_plan.to_gcloud(plan)) if "service-accounts" in c]
    terraform = setup_plan.to_terraform(plan).split('resource "google_service_account_iam_member"')[1:]
    assert len(gcloud) == len(terraform) == 3
    for binding, command, block in zip(plan.service_account_bindings, gcloud, terraform, strict=True):
        assert command[4] == binding.resource == hcl_value(block, "service_account_id")
        assert flags(command) == {"role": binding.role, "member": binding.member}
        assert (hcl_value(block, "role"), hcl_value(block, "member")) == (binding.role, binding.member)


def test_delegates_plan_admits_the_chain_and_only_the_chain(emu):
    _, step, plan = plan_for(env=variables(DELEGATES=",".join(HOPS)))
    emu.world = plan_to_world(plan, ISSUER)
    chained = exchange(emu, step, DELEGATES=",".join(HOPS))
    assert chained.principal == f"serviceAccount:{SA}"
    assert emu.token_info(chained.access_token).principal.email == SA
    emu.reset_log()
    with pytest.raises(PipeError):
        exchange(emu, step)  # the repository itself may not act as SERVICE_ACCOUNT: only through the chain
    assert [(r.route, r.status) for r in emu.requests] == [("sts", 200), ("iam", 403)]
