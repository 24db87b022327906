"""ACTION: setup: the Google side of keyless access, planned offline from the step token's claims.

One Plan (APIs, pool, OIDC provider, grants) is built from the claims and the variables, then rendered
twice: gcloud commands and the equivalent Terraform. Secure by default: the provider always has an
attribute condition pinning this workspace and repository, and every grant names this repository's
principalSet, never the whole pool. Nothing here touches the network or prints the token.
"""

import itertools
from dataclasses import dataclass

from pipe import gcloud, google_registries, service_accounts
from pipe.config import Config
from pipe.errors import PipeError
from pipe.oidc import StepToken
from pipe.parsers import RESTRICT_VARIABLE, Restriction
from pipe.provider import Provider

WORKLOAD_IDENTITY_USER = "roles/iam.workloadIdentityUser"
TOKEN_CREATOR = "roles/iam.serviceAccountTokenCreator"
AR_READER = "roles/artifactregistry.reader"

# Every Bitbucket claim worth a condition or an IAM member, under snake_case attribute names.
ATTRIBUTE_MAPPING = (
    ("google.subject", "assertion.sub"),
    ("attribute.repository_uuid", "assertion.repositoryUuid"),
    ("attribute.workspace_uuid", "assertion.workspaceUuid"),
    ("attribute.deployment_environment_uuid", "assertion.deploymentEnvironmentUuid"),
    ("attribute.branch_name", "assertion.branchName"),
)


# --- The plan ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class OidcProvider:
    """The provider to create: its names (pipe.provider) and what it trusts."""

    names: Provider
    issuer_uri: str
    allowed_audiences: tuple[str, ...]
    attribute_mapping: tuple[tuple[str, str], ...]
    attribute_condition: str

    @property
    def mapping(self) -> dict[str, str]:
        return dict(self.attribute_mapping)


@dataclass(frozen=True)
class ServiceAccountBinding:
    email: str
    role: str
    member: str

    @property
    def resource(self) -> str:
        return service_accounts.resource_name(self.email)


@dataclass(frozen=True)
class RepositoryGrant:
    project: str
    location: str
    repository: str
    role: str
    member: str


@dataclass(frozen=True)
class Plan:
    restriction: Restriction
    workspace_uuid: str
    repository_uuid: str
    apis: tuple[str, ...]
    provider: OidcProvider
    member: str  # this repository's principalSet
    # The impersonation chain, first hop first: the repository on DELEGATES[0] (or SERVICE_ACCOUNT),
    # then each account on the next one.
    service_account_bindings: tuple[ServiceAccountBinding, ...]
    repository_grant: RepositoryGrant | None
    notes: tuple[str, ...] = ()


def build(cfg: Config, step: StepToken, restrict: Restriction) -> Plan:
    claims = _claims(step, restrict)
    p = cfg.provider
    provider = OidcProvider(
        names=p,
        issuer_uri=claims["iss"],
        allowed_audiences=(step.audiences[0],),  # what this step's token carries (Bitbucket's default or the first custom one)
        attribute_mapping=ATTRIBUTE_MAPPING,
        attribute_condition=attribute_condition(claims, restrict),
    )
    member = p.repository_member(claims["repositoryUuid"])
    bindings = chain_bindings(cfg, member)
    reader = f"serviceAccount:{cfg.service_account}" if cfg.service_account else member
    apis = ("iam.googleapis.com", "sts.googleapis.com") + (("iamcredentials.googleapis.com",) if bindings else ())
    grant, notes = None, []
    target = google_registries.repository_of(cfg.image.host, cfg.image.path) if cfg.image else None
    if target:
        grant = RepositoryGrant(target.project, target.location, target.repository, AR_READER, reader)
    elif cfg.image:
        notes.append(
            f"IMAGE {cfg.image.display} is not an Artifact Registry path (LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE): "
            f"grant {AR_READER} on its repository to {reader} yourself."
        )
    else:
        notes.append(f"No IMAGE is set: grant {reader} the roles this step needs on the resources it uses.")
    if bindings:
        accounts = ", ".join(b.email for b in bindings)
        notes.append(f"These service accounts must exist already (gcloud iam service-accounts create): {accounts}.")
    return Plan(restrict, claims["workspaceUuid"], claims["repositoryUuid"], apis, provider, member, bindings, grant, tuple(notes))


def chain_bindings(cfg: Config, member: str) -> tuple[ServiceAccountBinding, ...]:
    """What impersonating SERVICE_ACCOUNT through DELEGATES needs: the repository may act as the first
    account of the chain, and each account may mint tokens for the next (Google checks every hop)."""
    if not cfg.service_account:
        return ()
    chain = [*cfg.delegates, cfg.service_account]
    first = ServiceAccountBinding(chain[0], WORKLOAD_IDENTITY_USER, member)
    hops = [ServiceAccountBinding(nxt, TOKEN_CREATOR, f"serviceAccount:{prev}") for prev, nxt in itertools.pairwise(chain)]
    return (first, *hops)


def _claims(step: StepToken, restrict: Restriction) -> dict[str, str]:
    needed = {"iss": "", "workspaceUuid": "", "repositoryUuid": ""}
    if restrict.branch:
        needed["branchName"] = " (restricting to a branch needs a branch pipeline; tags and custom runs have none)"
    if restrict.deployment:
        needed["deploymentEnvironmentUuid"] = " (restricting to a deployment needs a step with `deployment:`)"
    claims = {}
    for name, why in needed.items():
        value = step.claims.get(name)
        if not isinstance(value, str) or not value:
            raise PipeError(
                f"The step's OIDC token has no {name} claim{why}: run ACTION setup in a step with `oidc: true`, "
                f"or lower {RESTRICT_VARIABLE} (now '{restrict}')."
            )
        claims[name] = value
    if not step.audiences:
        raise PipeError("The step's OIDC token has no aud claim: run ACTION setup in a step with `oidc: true`.")
    return claims


def attribute_condition(claims: dict[str, str], restrict: Restriction) -> str:
    """A CEL expression admitting only this workspace and repository (and branch / environment)."""
    names = ["workspaceUuid", "repositoryUuid"]
    names += ["branchName"] * restrict.branch + ["deploymentEnvironmentUuid"] * restrict.deployment
    return " && ".join(f"assertion.{name} == {cel_string(claims[name])}" for name in names)


def cel_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


# --- gcloud --------------------------------------------------------------------------------------

def to_gcloud(plan: Plan) -> str:
    """gcloud names the pool and provider by their full resource names: it refuses a project number in --project."""
    pv = plan.provider
    mapping = ",".join(f"{key}={value}" for key, value in pv.attribute_mapping)
    out = [f"# {note}" for note in plan.notes]
    out += [
        gcloud.services_enable(*plan.apis, project=pv.names.project_number),
        "# If the pool or provider exists already, run `... update` / `... update-oidc` with the same flags instead.",
        gcloud.pool("create", pv.names),
        gcloud.command(
            gcloud.provider("create-oidc", pv.names),
            f"--issuer-uri={gcloud.arg(pv.issuer_uri)}",
            gcloud.list_flag("--allowed-audiences", pv.allowed_audiences),
            f"--attribute-mapping={gcloud.arg(mapping)}",
            f"--attribute-condition={gcloud.arg(pv.attribute_condition)}",
        ),
    ]
    out += [gcloud.grant_on_service_account(b.email, b.role, b.member) for b in plan.service_account_bindings]
    if plan.repository_grant:
        g = plan.repository_grant
        out.append(gcloud.command(
            gcloud.repository("add-iam-policy-binding", g.repository, g.project, g.location),
            f"--role={g.role} --member={gcloud.arg(g.member)}",
        ))
    return "\n".join(out)


# --- Terraform -------------------------------------------------------------------------------------

def hcl_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + escaped.replace("${", "$${").replace("%{", "%%{") + '"'


def _attrs(*pairs: tuple[str, str]) -> list[str]:
    """`name = value` lines with the `=` aligned, as `terraform fmt` writes them."""
    width = max(len(name) for name, _ in pairs)
    return [f"{name:<{width}} = {value}" for name, value in pairs]


def _resource(kind: str, name: str, *body: str) -> str:
    return "\n".join([f'resource "{kind}" "{name}" {{', *[f"  {line}" for line in body], "}"])


def to_terraform(plan: Plan) -> str:
    pv = plan.provider
    project = hcl_string(pv.names.project_number)
    after_provider = ("depends_on", "[google_iam_workload_identity_pool_provider.bitbucket]")
    notes = [f"# {note}" for note in plan.notes] + ["# Existing pool or provider: `terraform import` them first."]
    blocks = ["\n".join(notes)]
    blocks.append(_resource("google_project_service", "bitbucket", *_attrs(
        ("for_each", f"toset([{', '.join(hcl_string(api) for api in plan.apis)}])"),
        ("project", project),
        ("service", "each.value"),
        ("disable_on_destroy", "false"),
    )))
    blocks.append(_resource("google_iam_workload_identity_pool", "bitbucket", *_attrs(
        ("project", project),
        ("workload_identity_pool_id", hcl_string(pv.names.pool_id)),
        ("depends_on", "[google_project_service.bitbucket]"),
    )))
    blocks.append(_resource(
        "google_iam_workload_identity_pool_provider", "bitbucket",
        *_attrs(
            ("project", project),
            ("workload_identity_pool_id", "google_iam_workload_identity_pool.bitbucket.workload_identity_pool_id"),
            ("workload_identity_pool_provider_id", hcl_string(pv.names.provider_id)),
            ("attribute_condition", hcl_string(pv.attribute_condition)),
        ),
        "attribute_mapping = {",
        *[f"  {line}" for line in _attrs(*[(hcl_string(k), hcl_string(v)) for k, v in pv.attribute_mapping])],
        "}",
        "oidc {",
        *[f"  {line}" for line in _attrs(
            ("issuer_uri", hcl_string(pv.issuer_uri)),
            ("allowed_audiences", f"[{', '.join(hcl_string(a) for a in pv.allowed_audiences)}]"),
        )],
        "}",
    ))
    for hop, sa in enumerate(plan.service_account_bindings):
        blocks.append(_resource("google_service_account_iam_member", "bitbucket_repository" if hop == 0 else f"chain_{hop}", *_attrs(
            ("service_account_id", hcl_string(sa.resource)),
            ("role", hcl_string(sa.role)),
            ("member", hcl_string(sa.member)),
            after_provider,
        )))
    if plan.repository_grant:
        g = plan.repository_grant
        blocks.append(_resource("google_artifact_registry_repository_iam_member", "bitbucket_reader", *_attrs(
            ("project", hcl_string(g.project)),
            ("location", hcl_string(g.location)),
            ("repository", hcl_string(g.repository)),
            ("role", hcl_string(g.role)),
            ("member", hcl_string(g.member)),
            after_provider,
        )))
    return "\n\n".join(blocks)


# --- Output ------------------------------------------------------------------------------------------

def _admits(plan: Plan, step: StepToken) -> str:
    admits = f"workspace {plan.workspace_uuid}, repository {plan.repository_uuid}"
    if plan.restriction.branch:
        admits += f", branch '{step.claim('branchName')}'"
    if plan.restriction.deployment:
        admits += f", deployment environment {step.claim('deploymentEnvironmentUuid')}"
    return admits


def _next_step(cfg: Config) -> str:
    variables = f"WORKLOAD_IDENTITY_PROVIDER: {cfg.provider.name}"
    if cfg.service_account:
        variables += f", SERVICE_ACCOUNT: {cfg.service_account}"
    if cfg.delegates:
        variables += f", DELEGATES: [{', '.join(cfg.delegates)}]"
    return f"Then keep {variables}, remove ACTION: setup, and run the pipe (ACTION: doctor checks every stage)."


def render(cfg: Config, step: StepToken, restrict: Restriction) -> str:
    """The setup guide: a heading, then the gcloud block, then the Terraform block (the same plan)."""
    plan = build(cfg, step, restrict)
    rule = "-" * 100
    return "\n".join([
        f"Setup for Workload Identity Federation from this Bitbucket repository ({RESTRICT_VARIABLE}: {restrict}).",
        f"Admits only: {_admits(plan, step)}.",
        "Nothing was changed. Run ONE of the two blocks below as someone who may administer IAM in the projects named.",
        _next_step(cfg),
        "",
        f"{rule}\n# gcloud (bash)\n{rule}",
        to_gcloud(plan),
        "",
        f"{rule}\n# Terraform (hashicorp/google provider)\n{rule}",
        to_terraform(plan),
        rule,
    ])
