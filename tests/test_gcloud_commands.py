"""Every gcloud command that ACTION setup prints, and every one in the README, is accepted by the real gcloud;
every Terraform rendering is HCL that Terraform itself reads and formats as printed.

Each gcloud command runs with a throwaway configuration and no account: a command gcloud accepts stops at
"no active account" after parsing and validating its arguments; a parse or validation error fails the test.
(Terraform's google provider cannot be downloaded here, so `terraform validate` is out of reach.)
"""

import itertools
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pipe import config, oidc, parsers, setup_plan
from tests.support.emulator import Issuer
from tests.support.figures import record
from tests.support.google_tools import GCLOUD, TERRAFORM, gcloud_verdict, report_missing

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


def test_missing_google_tools_are_reported():
    report_missing()  # one loud figures line when gcloud or node is absent, so skipped tests never look passed
