"""Unit tests for reading users' credential configurations and rendering the pipe's own."""

import base64
import json
import stat
from pathlib import Path

import pytest

from pipe import config, credential_config, export
from pipe.errors import PipeError

PROVIDER = "projects/123456789012/locations/global/workloadIdentityPools/bb-pool/providers/bb-provider"
SA = "puller@my-proj.iam.gserviceaccount.com"
GCLOUD = {  # `gcloud iam workload-identity-pools create-cred-config ... --service-account-token-lifetime-seconds=1800`
    "universe_domain": "googleapis.com",
    "type": "external_account",
    "audience": "//iam.googleapis.com/" + PROVIDER,
    "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
    "token_url": "https://sts.googleapis.com/v1/token",
    "credential_source": {"file": "/path/to/oidc.jwt"},
    "service_account_impersonation_url": f"https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{SA}:generateAccessToken",
    "service_account_impersonation": {"token_lifetime_seconds": 1800},
}


@pytest.mark.parametrize("form", ["path", "json", "base64"])
def test_gcloud_config_supplies_the_variables(tmp_path, form):
    text = json.dumps(GCLOUD, indent=2)
    (tmp_path / "cred.json").write_text(text)
    value = {"path": "cred.json", "json": text, "base64": base64.b64encode(text.encode()).decode()}[form]
    cfg = config.load({"GOOGLE_OIDC_CONFIG_FILE": value}, tmp_path)
    assert cfg.provider.name == PROVIDER
    assert cfg.service_account == SA
    assert cfg.lifetime == 1800
    assert cfg.token_url == "https://sts.googleapis.com/v1/token"
    assert cfg.project_id == "my-proj"


def test_variables_win_over_the_config_file(tmp_path):
    cfg = config.load({"GOOGLE_OIDC_CONFIG_FILE": json.dumps(GCLOUD), "SERVICE_ACCOUNT": "other-sa@p2-proj.iam.gserviceaccount.com"}, tmp_path)
    assert cfg.service_account == "other-sa@p2-proj.iam.gserviceaccount.com"


@pytest.mark.parametrize("value", ['{"type": "service_account", "private_key": "x"}', "no-such-file.json", "{not json"])
def test_other_files_are_refused(tmp_path, value):
    with pytest.raises(PipeError, match="GOOGLE_OIDC_CONFIG_FILE"):
        config.load({"GOOGLE_OIDC_CONFIG_FILE": value}, tmp_path)


def test_rendered_config_matches_gcloud_for_impersonation():
    cfg = config.load({"WORKLOAD_IDENTITY_PROVIDER": PROVIDER, "SERVICE_ACCOUNT": SA, "ACCESS_TOKEN_LIFETIME": "1800s"}, Path("/b"))
    rendered = credential_config.render(cfg, "/path/to/oidc.jwt")
    expected = {**GCLOUD, "credential_source": {"file": "/path/to/oidc.jwt", "format": {"type": "text"}}}
    assert rendered == expected


def test_rendered_config_for_direct_federation_and_delegation():
    direct = credential_config.render(config.load({"WORKLOAD_IDENTITY_PROVIDER": PROVIDER}, Path("/b")), "/t")
    assert "service_account_impersonation_url" not in direct
    assert direct["token_info_url"] == "https://sts.googleapis.com/v1/introspect"
    cfg = config.load({"WORKLOAD_IDENTITY_PROVIDER": PROVIDER, "SERVICE_ACCOUNT": SA, "DELEGATES": "deploy-hop@my-proj.iam.gserviceaccount.com"}, Path("/b"))
    chained = credential_config.render(cfg, "/t")
    assert chained["type"] == "impersonated_service_account"
    assert chained["delegates"] == ["projects/-/serviceAccounts/deploy-hop@my-proj.iam.gserviceaccount.com"]
    assert chained["source_credentials"]["type"] == "external_account"


def test_token_options_need_a_service_account():
    for extra in ({"DELEGATES": "deploy-hop@my-proj.iam.gserviceaccount.com"}, {"ID_TOKEN_AUDIENCE": "https://x.run.app"}):
        with pytest.raises(PipeError, match="needs SERVICE_ACCOUNT"):
            config.load({"WORKLOAD_IDENTITY_PROVIDER": PROVIDER, **extra}, Path("/b"))


def test_scopes_accept_short_names():
    scopes = "cloud-platform, https://www.googleapis.com/auth/userinfo.email"
    cfg = config.load({"WORKLOAD_IDENTITY_PROVIDER": PROVIDER, "ACCESS_TOKEN_SCOPES": scopes}, Path("/b"))
    assert cfg.scopes == ("https://www.googleapis.com/auth/cloud-platform", "https://www.googleapis.com/auth/userinfo.email")


def test_export_writes_private_files_exclusively(tmp_path):
    cfg = config.load({"WORKLOAD_IDENTITY_PROVIDER": PROVIDER, "SERVICE_ACCOUNT": SA, "IMAGE": "europe-west2-docker.pkg.dev/p/r/i:1",
                       "BITBUCKET_CLONE_DIR": str(tmp_path)}, tmp_path)
    directory = export.export(cfg, "step.jwt.value", "ya29.secret-access", None)
    assert directory == tmp_path / export.PIPE_PATH / "gcp"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in directory.rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    auths = json.loads((directory / "docker" / "config.json").read_text())["auths"]
    assert "europe-west2-docker.pkg.dev" in auths and "gcr.io" in auths
    assert base64.b64decode(auths["gcr.io"]["auth"]).decode() == "oauth2accesstoken:ya29.secret-access"
    # A second run in the same step replaces the files; a planted link is never followed.
    (directory / "env").unlink()
    (directory / "env").symlink_to(tmp_path / "elsewhere")
    again = export.export(cfg, "step.jwt.value", "ya29.other", None)
    assert not (tmp_path / "elsewhere").exists() and not (again / "env").is_symlink()
    with pytest.raises(FileExistsError):
        export.write_private(again / "env", "x")


@pytest.mark.parametrize("user, owner", [("", None), ("root", None), ("app", None), ("1000", (1000, 1000)),
                                         ("1000:50", (1000, 50)), ("1000:staff", None), ("١٠٠٠", None)])
def test_credentials_are_handed_only_to_a_numeric_image_user(user, owner):
    assert export.numeric_owner(user) == owner
