"""Every gcloud command that ACTION setup prints, and every one in the README, is accepted by the real gcloud;
every Terraform rendering is HCL that Terraform itself reads and formats as printed.

Each gcloud command runs with a throwaway configuration and no account: a command gcloud accepts stops at
"no active account" after parsing and validating its arguments; a parse or validation error fails the test.
(Terraform's google provider cannot be downloaded here, so `terraform validate` is out of reach.)
"""

import contextlib
import io
import itertools
import json
import re
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipe import config, main, oidc, parsers, setup_plan
from tests.support.emulator import Issuer
from tests.support.figures import record
from tests.support.google_tools import GCLOUD, TERRAFORM, gcloud, gcloud_verdict, split_command

ROOT = Path(__file__).resolve().parent.parent
PROVIDER = "projects/123456789012/locations/global/workloadIdentityPools/bitbucket/providers/acme"
ISSUER = Issuer("acme")
ENVIRONMENT = "{5b0e3c1e-8d2a-4f7e-9a41-2c6d9b1f0e22}"
VARIATIONS = {
    "SETUP_RESTRICT_TO": ["repository", "branch", "deployment", "branch,deployment"],
    "SERVICE_ACCOUNT": [None, "image-puller@acme-ci.iam.gserviceaccount.com", "123456789012-compute@developer.gserviceaccount.com"],
    "DELEGATES": [None, "ci-broker@shared-proj.iam.gserviceaccount.com,deploy-hop@acme-ci.iam.gserviceaccount.com"],
    "IMAGE": [None, "europe-west2-docker.pkg.dev/acme-ci/private/app:1", "gcr.io/acme-ci/app:1", "eu.gcr.io/acme-ci/app@sha256:" + "a" * 64],
}


def setup_outputs():
    step = oidc.read({"BITBUCKET_STEP_OIDC_TOKEN": ISSUER.mint("{0d6c1f43-6f39-4a35-9d1b-3b2f8c9e7a10}", branch="release/it's \"1\"",
                                                                deployment_environment_uuid=ENVIRONMENT)})
    for values in itertools.product(*VARIATIONS.values()):
        env = {"WORKLOAD_IDENTITY_PROVIDER": PROVIDER, **{k: v for k, v in zip(VARIATIONS, values, strict=True) if v}}
        if env.get("DELEGATES") and not env.get("SERVICE_ACCOUNT"):
            continue  # refused by config: delegates need a service account
        cfg = config.load(env, Path.cwd())
        yield setup_plan.render(cfg, step, parsers.restriction("SETUP_RESTRICT_TO", env["SETUP_RESTRICT_TO"]))


def commands_in(text: str) -> list[str]:
    """The gcloud commands of a shell block, continuation lines joined as bash joins them."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip().startswith("gcloud ")]


def readme_commands() -> list[str]:
    blocks = re.findall(r"```(?:sh|bash)\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [c for block in blocks for c in commands_in(block)]


def refusal_commands() -> list[str]:
    """Commands inside the one-line refusals of bad input (backticked, as every printed command is)."""
    from pipe.errors import PipeError

    lines = []
    for value in ("projects/my-project/locations/global/workloadIdentityPools/bitbucket/providers/acme",):
        try:
            parsers.workload_identity_provider("WORKLOAD_IDENTITY_PROVIDER", value)
        except PipeError as error:
            lines.append(error.message)
    return [c for line in lines for c in re.findall(r"`(gcloud [^`]+)`", line)]


def all_commands() -> list[str]:
    found = {c for output in setup_outputs() for c in commands_in(output.split("# Terraform")[0])}
    return sorted(found | set(readme_commands()) | set(refusal_commands()))


COMMANDS = all_commands()


def test_setup_prints_the_commands_this_test_runs():
    for prefix in ("gcloud services enable", "gcloud iam workload-identity-pools create",
                   "gcloud iam workload-identity-pools providers create-oidc", "gcloud iam service-accounts add-iam-policy-binding",
                   "gcloud artifacts repositories add-iam-policy-binding"):
        assert any(c.startswith(prefix) for c in COMMANDS), prefix
    assert any("serviceAccountTokenCreator" in c for c in COMMANDS), "the DELEGATES chain grants must be among them"
    assert any(c.startswith("gcloud projects describe") for c in COMMANDS), "the refusal of a project ID must be among them"


@pytest.mark.skipif(GCLOUD is None, reason="gcloud is not installed")
def test_gcloud_accepts_every_command():
    with ThreadPoolExecutor(max_workers=4) as pool:
        verdicts = dict(zip(COMMANDS, pool.map(gcloud_verdict, COMMANDS), strict=True))
    refused = {command: stderr.splitlines()[0] for command, (ok, stderr) in verdicts.items() if not ok}
    record("gcloud commands", f"{len(COMMANDS)} printed by setup or input refusals, or shown in the README, run through gcloud, "
                              f"{len(COMMANDS) - len(refused)} accepted")
    assert not refused, refused


def terraform_renderings() -> set[str]:
    rule = "-" * 100
    return {output.split("# Terraform (hashicorp/google provider)\n", 1)[1].replace(rule, "").strip("\n") + "\n"
            for output in setup_outputs()}


@pytest.mark.skipif(TERRAFORM is None, reason="terraform is not installed")
def test_terraform_reads_every_rendering_and_would_not_reformat_it():
    renderings = terraform_renderings()
    assert len(renderings) > 40 and any("serviceAccountTokenCreator" in text for text in renderings)
    refused = []
    for text in renderings:
        checked = subprocess.run([TERRAFORM, "fmt", "-check", "-no-color", "-"], input=text, capture_output=True, text=True, timeout=60)
        if checked.returncode:
            refused.append(checked.stdout + checked.stderr)
    record("terraform renderings", f"{len(renderings)} from setup read by `terraform fmt -check`, {len(renderings) - len(refused)} as printed")
    assert not refused, refused[0]


# --- each value reaches gcloud and Terraform as exactly the one value meant -----------------------------------------

class _IamRecorder(BaseHTTPRequestHandler):
    """IAM's API for gcloud (CLOUDSDK_API_ENDPOINT_OVERRIDES_IAM): records each request's JSON body, answers with a
    finished operation or an empty policy, so gcloud completes the command it parsed."""

    def _answer(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.received.append((self.command, self.path, json.loads(body) if body else None))
        reply = {"bindings": [], "etag": "BwY="} if self.path.split("?")[0].endswith(":getIamPolicy") else {
            "name": "projects/1/locations/global/workloadIdentityPools/p/operations/o", "done": True, "response": {}}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = _answer

    def log_message(self, *args):
        pass


def _sent_by_gcloud(command: str, tmp: Path) -> list:
    """The JSON bodies gcloud sends when it runs the printed command against a recorder of IAM's API."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _IamRecorder)
    server.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (tmp / "token").write_text("test-access-token")
    try:
        result = gcloud(split_command(command)[1:], tmp / "gcloud", CLOUDSDK_AUTH_ACCESS_TOKEN_FILE=str(tmp / "token"),
                        CLOUDSDK_API_ENDPOINT_OVERRIDES_IAM=f"http://127.0.0.1:{server.server_address[1]}/")
        assert result.returncode == 0, result.stderr
    finally:
        server.shutdown()
        server.server_close()
    return [body for _, _, body in server.received if body]


# What a step token's claims may hold: commas (gcloud's list separator), '^' (its escape), '=' (its dict separator),
# quotes, dollars and percent signs (HCL interpolation), backslashes, spaces, non-ASCII.
AWKWARD = st.text(alphabet=st.sampled_from(list(",^=:;'\"$%{}\\ é/|#~+!@&*")) | st.characters(codec="ascii", categories=["L", "N"]),
                  min_size=1, max_size=24)


@pytest.mark.skipif(GCLOUD is None, reason="gcloud is not installed")
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(audiences=st.lists(AWKWARD, min_size=1, max_size=3), branch=AWKWARD, repository=AWKWARD)
@example(audiences=["a,b", "c"], branch="^:^x", repository="{r,=}")
@example(audiences=["^x"], branch="b", repository="r")
@example(audiences=["a"], branch="ya29.release", repository="r")  # token-shaped claims: printed as they are, not redacted
@example(audiences=["eyJhbGciOi.eyJzdWIiOi.x"], branch="eyJhbGciOi.eyJzdWIiOi.x", repository="r")
def test_every_value_reaches_gcloud_whole(tmp_path_factory, audiences, branch, repository):
    """The create-oidc and grant commands as ACTION: setup prints them, run by the real gcloud: the audiences,
    condition, mapping and member it sends are exactly the plan's, whatever the claims hold."""
    token = ISSUER.mint(repository, branch=branch, aud=audiences)
    variables = {"WORKLOAD_IDENTITY_PROVIDER": PROVIDER, "SERVICE_ACCOUNT": "image-puller@acme-ci.iam.gserviceaccount.com"}
    step = oidc.read({"BITBUCKET_STEP_OIDC_TOKEN": token}, now=0)
    cfg = config.load(variables, Path.cwd())
    plan = setup_plan.build(cfg, step, parsers.restriction("SETUP_RESTRICT_TO", "branch"))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main.main({**variables, "ACTION": "setup", "SETUP_RESTRICT_TO": "branch", "BITBUCKET_STEP_OIDC_TOKEN": token}) == 0
    commands = commands_in(printed.getvalue().split("# Terraform")[0])
    [provider_body] = _sent_by_gcloud(next(c for c in commands if "create-oidc" in c), tmp_path_factory.mktemp("gcloud"))
    assert provider_body["oidc"]["allowedAudiences"] == list(plan.provider.allowed_audiences)
    assert provider_body["oidc"]["issuerUri"] == plan.provider.issuer_uri
    assert provider_body["attributeCondition"] == plan.provider.attribute_condition
    assert provider_body["attributeMapping"] == plan.provider.mapping
    bodies = _sent_by_gcloud(next(c for c in commands if "service-accounts add-iam-policy-binding" in c), tmp_path_factory.mktemp("gcloud"))
    members = [m for body in bodies for b in body.get("policy", {}).get("bindings", []) for m in b["members"]]
    assert members == [plan.member]


@pytest.mark.skipif(TERRAFORM is None, reason="terraform is not installed")
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.text(alphabet=st.sampled_from(list("${}%~\"\\\n ab")), max_size=16), min_size=1, max_size=20))
@example(values=["${var.x}", "%{if true}x%{endif}", "$${literal}", "\\", '"', "a\nb", "$", "%", "{"])
def test_every_value_reaches_terraform_whole(tmp_path_factory, values):
    """setup_plan.hcl_string's quoting, read back by terraform console: no interpolation, no escape lost."""
    directory = tmp_path_factory.mktemp("terraform")
    (directory / "main.tf").write_text("locals {\n  values = [" + ", ".join(setup_plan.hcl_string(v) for v in values) + "]\n}\n")
    shown = subprocess.run([TERRAFORM, "console"], input="jsonencode(local.values)\n", cwd=directory, capture_output=True,
                           text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(json.loads(shown.stdout.strip().splitlines()[-1])) == values
