"""Unit tests for the pipe's own credential configurations and exports (users' files: tests/test_config_file.py)."""

import base64
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pipe import config, export, pipe_cred_config, stopping
from pipe.errors import PipeError
from tests.support.figures import probe
from tests.support.inputs import gcloud_config

PROVIDER = "projects/123456789012/locations/global/workloadIdentityPools/bb-pool/providers/bb-provider"
SA = "puller@my-proj.iam.gserviceaccount.com"
# `gcloud iam workload-identity-pools create-cred-config ... --service-account-token-lifetime-seconds=1800`
GCLOUD = gcloud_config(
    audience="//iam.googleapis.com/" + PROVIDER,
    service_account_impersonation_url=f"https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{SA}:generateAccessToken",
    service_account_impersonation={"token_lifetime_seconds": 1800},
)


def test_rendered_config_matches_gcloud_for_impersonation():
    cfg = config.load({"WORKLOAD_IDENTITY_PROVIDER": PROVIDER, "SERVICE_ACCOUNT": SA, "ACCESS_TOKEN_LIFETIME": "1800s"}, Path("/b"))
    rendered = pipe_cred_config.render(cfg, "/path/to/oidc.jwt")
    expected = {**GCLOUD, "credential_source": {"file": "/path/to/oidc.jwt", "format": {"type": "text"}}}
    assert rendered == expected


def test_rendered_config_for_direct_federation_and_delegation():
    direct = pipe_cred_config.render(config.load({"WORKLOAD_IDENTITY_PROVIDER": PROVIDER}, Path("/b")), "/path/to/oidc.jwt")
    # `create-cred-config` without --service-account: the impersonation URL's place holds token_info_url.
    gcloud_direct = {k: v for k, v in GCLOUD.items() if not k.startswith("service_account_impersonation")}
    expected = {**gcloud_direct, "credential_source": {"file": "/path/to/oidc.jwt", "format": {"type": "text"}},
                "token_info_url": "https://sts.googleapis.com/v1/introspect"}
    assert json.dumps(direct) == json.dumps(expected)  # same keys in the same order
    cfg = config.load({"WORKLOAD_IDENTITY_PROVIDER": PROVIDER, "SERVICE_ACCOUNT": SA, "DELEGATES": "deploy-hop@my-proj.iam.gserviceaccount.com",
                       "IAM_CREDENTIALS_ENDPOINT": "http://127.0.0.1:8765"}, Path("/b"))
    chained = pipe_cred_config.render(cfg, "/path/to/oidc.jwt")
    assert chained["type"] == "impersonated_service_account"
    assert chained["delegates"] == ["projects/-/serviceAccounts/deploy-hop@my-proj.iam.gserviceaccount.com"]
    assert chained["service_account_impersonation_url"] == f"http://127.0.0.1:8765/v1/projects/-/serviceAccounts/{SA}:generateAccessToken"
    assert chained["endpoint"] == "http://127.0.0.1:8765"  # Node's google-auth-library takes the IAM endpoint from here
    assert chained["source_credentials"] == direct


def test_delegated_export_gives_gcloud_its_own_chain(tmp_path):
    hop = "deploy-hop@my-proj.iam.gserviceaccount.com"
    cfg = config.load({"WORKLOAD_IDENTITY_PROVIDER": PROVIDER, "SERVICE_ACCOUNT": SA, "DELEGATES": hop,
                       "IAM_CREDENTIALS_ENDPOINT": "http://127.0.0.1:8765", "BITBUCKET_CLONE_DIR": str(tmp_path)}, tmp_path)
    directory = export.export(cfg, "step.jwt.value", "ya29.secret-access", None)
    env = read_env(directory)
    assert env["GOOGLE_APPLICATION_CREDENTIALS"] == str(directory / "credentials.json")
    assert env["CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE"] == str(directory / "federated.json")
    assert env["CLOUDSDK_AUTH_IMPERSONATE_SERVICE_ACCOUNT"] == f"{hop},{SA}"  # gcloud: delegates first, target last
    assert env["CLOUDSDK_API_ENDPOINT_OVERRIDES_IAMCREDENTIALS"] == "http://127.0.0.1:8765/"
    chained = json.loads((directory / "credentials.json").read_text())
    assert json.loads((directory / "federated.json").read_text()) == chained["source_credentials"]
    assert stat.S_IMODE((directory / "federated.json").stat().st_mode) == 0o600
    plain = export.export(config.load({"WORKLOAD_IDENTITY_PROVIDER": PROVIDER, "SERVICE_ACCOUNT": SA}, tmp_path), "t", "a", None)
    assert not (plain / "federated.json").exists() and "IMPERSONATE" not in (plain / "env").read_text()


def read_env(directory: Path) -> dict:
    """The `env` script as bash reads it."""
    script = f"set -e; . {shlex.quote(str(directory / 'env'))}; env -0"
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True, env={"PATH": os.environ["PATH"]}).stdout
    return dict(item.split("=", 1) for item in out.split("\0") if "=" in item)


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
    assert directory == tmp_path / export.PIPE_PATH / "gcp" == export.export_dir(cfg)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in directory.rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    auths = json.loads((directory / "docker" / "config.json").read_text())["auths"]
    assert "europe-west2-docker.pkg.dev" in auths and "gcr.io" in auths
    assert base64.b64decode(auths["gcr.io"]["auth"]).decode() == "oauth2accesstoken:ya29.secret-access"
    assert read_env(directory)["GOOGLE_ACCESS_TOKEN_FILE"] == str(directory / "access-token")
    # A second run in the same step replaces the files; links and FIFOs planted inside are removed, never followed.
    (directory / "env").unlink()
    (directory / "env").symlink_to(tmp_path / "elsewhere")
    (directory / "docker" / "config.json").unlink()
    (directory / "docker" / "config.json").symlink_to(tmp_path / "elsewhere")
    os.mkfifo(directory / "fifo")
    with probe("links planted in the export dir"):
        again = export.export(cfg, "step.jwt.value", "ya29.other", None)
        assert not (tmp_path / "elsewhere").exists() and not (again / "env").is_symlink() and not (again / "fifo").exists()
        assert base64.b64encode(b"oauth2accesstoken:ya29.other").decode() in (again / "docker" / "config.json").read_text()


def readme_env_variables() -> dict[str, str]:
    """The README's `env` row: each variable it names, and the words before it (which say when it is written)."""
    row = next(line for line in (Path(__file__).resolve().parents[1] / "README.md").read_text().splitlines()
               if line.startswith("| `env` |"))
    return {name: row[:row.index(f"`{name}`")] for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row)}


@pytest.mark.parametrize("extra, expected", [
    ({}, {"GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE", "DOCKER_CONFIG", "GOOGLE_ACCESS_TOKEN_FILE",
          "GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT", "CLOUDSDK_PROJECT", "GCLOUD_PROJECT", "GCP_PROJECT"}),
    ({"DELEGATES": "hop-account@acme-ci.iam.gserviceaccount.com", "ID_TOKEN_AUDIENCE": "https://run.example"},
     {"GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE", "DOCKER_CONFIG", "GOOGLE_ACCESS_TOKEN_FILE",
      "GOOGLE_ID_TOKEN_FILE", "CLOUDSDK_AUTH_IMPERSONATE_SERVICE_ACCOUNT", "CLOUDSDK_API_ENDPOINT_OVERRIDES_IAMCREDENTIALS",
      "GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT", "CLOUDSDK_PROJECT", "GCLOUD_PROJECT", "GCP_PROJECT"}),
    ({"SERVICE_ACCOUNT": ""}, {"GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE", "DOCKER_CONFIG",
                               "GOOGLE_ACCESS_TOKEN_FILE"}),  # direct federation, no PROJECT_ID: no project is known
])
def test_the_env_file_sets_what_the_readme_lists(tmp_path, extra, expected):
    """Every variable of the exported env file, for each kind of export, and the README's row names each of them."""
    env = {"WORKLOAD_IDENTITY_PROVIDER": PROVIDER, "SERVICE_ACCOUNT": SA, "BITBUCKET_CLONE_DIR": str(tmp_path), **extra}
    cfg = config.load({k: v for k, v in env.items() if v}, tmp_path)
    directory = export.export(cfg, "step.jwt.value", "ya29.secret-access", "id.token.value" if cfg.id_token_audience else None)
    written = {name: value for name, value in read_env(directory).items() if name not in ("PATH", "PWD", "SHLVL", "_")}
    assert set(written) == expected
    assert set(written) <= set(readme_env_variables())
    for name, value in written.items():  # each names a file the export wrote, or a value the pipe knows
        assert (Path(value).exists() and directory in Path(value).parents) or name.endswith(("PROJECT", "ACCOUNT", "IAMCREDENTIALS"))


# ---------------------------------------------------------------- a hostile clone

ANCESTORS = [export.PIPE_PATH.parts[: i + 1] for i in range(len(export.PIPE_PATH.parts))] + [(*export.PIPE_PATH.parts, "gcp")]


def export_in(clone: Path, **extra):
    cfg = config.load({"WORKLOAD_IDENTITY_PROVIDER": PROVIDER, "SERVICE_ACCOUNT": SA, "BITBUCKET_CLONE_DIR": str(clone), **extra}, clone)
    return export.export(cfg, "step.jwt.value", "ya29.secret-access", None)


def secrets_outside(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and "step.jwt.value" in p.read_text(errors="replace")]


@pytest.mark.parametrize("parts", ANCESTORS, ids=lambda parts: "/".join(parts[-2:]))
def test_a_symlinked_ancestor_of_the_export_dir_is_refused(tmp_path, parts):
    clone, outside = tmp_path / "clone", tmp_path / "outside"
    outside.mkdir()
    (clone / Path(*parts)).parent.mkdir(parents=True)
    (clone / Path(*parts)).symlink_to(outside, target_is_directory=True)
    with probe(f"symlinked {parts[-1]}"):
        with pytest.raises(PipeError) as refused:
            export_in(clone)
        assert refused.value.message.startswith(f"{clone / Path(*parts)} is a symbolic link") and "\n" not in refused.value.message
        assert "remove it" in refused.value.message
        assert not list(outside.iterdir()) and not secrets_outside(tmp_path)


@pytest.mark.parametrize("parts", [ANCESTORS[0], ANCESTORS[-1]], ids=["ancestor", "export dir"])
@pytest.mark.parametrize("kind", ["file", "fifo", "dangling link"])
def test_anything_but_a_directory_in_the_way_is_refused_in_one_line(tmp_path, parts, kind):
    clone = tmp_path / "clone"
    path = clone / Path(*parts)
    path.parent.mkdir(parents=True)
    {"file": lambda: path.write_text("not a dir"), "fifo": lambda: os.mkfifo(path),
     "dangling link": lambda: path.symlink_to(tmp_path / "nowhere")}[kind]()
    with probe(f"{kind} at {parts[-1]}"):
        with pytest.raises(PipeError) as refused:
            export_in(clone)
        what = "a symbolic link" if kind == "dangling link" else "not a directory"
        assert refused.value.message.startswith(f"{path} is {what}") and "remove it from the repository" in refused.value.message
        assert not (tmp_path / "nowhere").exists() and not secrets_outside(tmp_path)


@pytest.mark.parametrize("storage", ["/elsewhere/pipes/x", "{clone}/../outside", "{clone}", "relative/../../outside"])
def test_a_storage_dir_outside_the_clone_is_refused(tmp_path, storage):
    clone = tmp_path / "clone"
    clone.mkdir()
    with probe("BITBUCKET_PIPE_STORAGE_DIR outside the clone"):
        with pytest.raises(PipeError, match=r"BITBUCKET_PIPE_STORAGE_DIR .* is not inside the clone directory"):
            export_in(clone, BITBUCKET_PIPE_STORAGE_DIR=storage.format(clone=clone))
        assert not secrets_outside(tmp_path)
    inside = export_in(clone, BITBUCKET_PIPE_STORAGE_DIR="custom/store")
    assert inside == clone / "custom" / "store" / "gcp"


# ---------------------------------------------------------------- credentials inside the run container

def run_cfg(clone: Path, **extra):
    return config.load({"WORKLOAD_IDENTITY_PROVIDER": PROVIDER, "SERVICE_ACCOUNT": SA, "IMAGE": "us-docker.pkg.dev/p/r/tool:1",
                        "GOOGLE_CREDENTIALS_IN_CONTAINER": "true", "BITBUCKET_CLONE_DIR": str(clone), **extra}, clone)


def run_dir(clone: Path) -> Path:
    return clone / export.PIPE_PATH / "gcp-run"


@pytest.mark.parametrize("user, owner", [("1000", (1000, 1000)), ("1000:50", (1000, 50)), ("", (0, 0))])
def test_container_files_exist_only_inside_the_context(tmp_path, user, owner):
    cfg = run_cfg(tmp_path, DELEGATES="deploy-hop@my-proj.iam.gserviceaccount.com")
    with export.container_credentials(cfg, "step.jwt.value", user) as (mounts, environment):
        names = {Path(source).name for source in mounts}
        assert names == {"oidc-token", "credentials.json", "federated.json"}
        for source, mount in mounts.items():
            info = os.stat(source)
            assert (info.st_uid, info.st_gid) == owner and stat.S_IMODE(info.st_mode) == 0o600
            assert mount == {"bind": f"{export.INSIDE}/{Path(source).name}", "mode": "ro"}
        assert environment["CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE"] == f"{export.INSIDE}/federated.json"
        assert json.loads(Path(next(iter(m for m in mounts if m.endswith("credentials.json")))).read_text())[
            "source_credentials"]["credential_source"]["file"] == f"{export.INSIDE}/oidc-token"
    assert not run_dir(tmp_path).exists()


@pytest.mark.parametrize("raised", [RuntimeError("docker failed"), stopping.Stopped(signal.SIGTERM)], ids=["exception", "signal"])
def test_container_files_are_removed_when_the_run_fails_or_is_stopped(tmp_path, raised):
    with pytest.raises(type(raised)):
        with export.container_credentials(run_cfg(tmp_path), "step.jwt.value", "1000"):
            assert run_dir(tmp_path).is_dir()
            raise raised
    assert not run_dir(tmp_path).exists()


def test_a_signal_while_the_files_are_written_leaves_none(tmp_path, monkeypatch):
    """SIGTERM delivered between creating the dir and handing its files over (main's handler raises Stopped)."""
    real_chown = export._chown

    def chown_then_signal(*args):
        real_chown(*args)
        signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(export, "_chown", chown_then_signal)
    restore = stopping.install()
    try:
        with probe("SIGTERM while the run files are written"):
            with pytest.raises(stopping.Stopped):
                with export.container_credentials(run_cfg(tmp_path), "step.jwt.value", "1000"):
                    pytest.fail("the context must not be entered")
            assert not run_dir(tmp_path).exists()
    finally:
        restore()


@pytest.mark.parametrize("user", ["99999999999", "1000:4294967295", "4294967295"])
def test_an_impossible_numeric_user_is_one_line_and_leaves_nothing(tmp_path, user):
    with probe(f"USER {user}"):
        with pytest.raises(PipeError) as refused:
            with export.container_credentials(run_cfg(tmp_path), "step.jwt.value", user):
                pytest.fail("the context must not be entered")
        assert refused.value.message == (f"The image's USER {user} is no user a container can run as (a uid and a gid go from 0 "
                                         "to 4294967294): fix USER in the image's Dockerfile.")
        assert not run_dir(tmp_path).exists()
    assert export.numeric_owner("4294967294") == (4294967294, 4294967294)


def test_a_named_user_keeps_root_only_files_and_is_warned(tmp_path, caplog):
    with export.container_credentials(run_cfg(tmp_path), "step.jwt.value", "app") as (mounts, _):
        assert all(os.stat(source).st_uid == 0 for source in mounts)
    assert "runs as user 'app', but the credential files can only be handed to a numeric USER" in caplog.text


def test_a_link_planted_at_the_run_dir_is_refused_and_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    clone = tmp_path / "clone"
    run_dir(clone).parent.mkdir(parents=True)
    run_dir(clone).symlink_to(outside, target_is_directory=True)
    with probe("symlinked gcp-run"):
        with pytest.raises(PipeError, match="gcp-run is a symbolic link"):
            with export.container_credentials(run_cfg(clone), "step.jwt.value", "1000"):
                pytest.fail("the context must not be entered")
        assert [p.name for p in outside.iterdir()] == ["keep"] and not secrets_outside(tmp_path)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_a_uid_the_user_namespace_does_not_map_is_one_line(tmp_path):
    """As in a userns-remapped daemon's step: only root is mapped, so chown to uid 1000 answers EINVAL."""
    script = (
        "import sys; from pathlib import Path; from pipe import export; from pipe.errors import PipeError\n"
        "from tests.test_pipe_cred_config import run_cfg, run_dir\n"
        "clone = Path(sys.argv[1])\n"
        "try:\n"
        "    with export.container_credentials(run_cfg(clone), 'step.jwt.value', '1000'): pass\n"
        "except PipeError as error: print(error.message)\n"
        "print('left:', run_dir(clone).exists())\n"
    )
    result = subprocess.run(["unshare", "--user", "--map-root-user", sys.executable, "-c", script, str(tmp_path)],
                            capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    if "unshare failed" in result.stderr or "Operation not permitted" in result.stderr:
        pytest.skip(f"no user namespaces here: {result.stderr.strip()}")
    with probe("USER the user namespace does not map"):
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [
            "us-docker.pkg.dev/p/r/tool:1 runs as USER 1000, which the Docker daemon's user namespace does not map, so the "
            "credential files cannot be handed to it (chown: Invalid argument): run the image as a uid the daemon maps "
            "(0 to 65535 on Bitbucket's docker service; root always works), or leave GOOGLE_CREDENTIALS_IN_CONTAINER off.",
            "left: False",
        ]


@pytest.mark.parametrize("user, owner", [("", None), ("root", None), ("app", None), ("1000", (1000, 1000)),
                                         ("1000:50", (1000, 50)), ("1000:staff", None), ("١٠٠٠", None)])
def test_credentials_are_handed_only_to_a_numeric_image_user(user, owner):
    assert export.numeric_owner(user) == owner
