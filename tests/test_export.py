"""pipe.export: the files EXPORT_CREDENTIALS writes for the rest of the step, read back by the tools that use them.

The `env` file is sourced by a real `sh` (and bash); the docker config is read by the real docker CLI, which presents
what it found to a stand-in for the Engine API on a unix socket (no daemon is started); the credential configuration
is loaded by google-auth and by gcloud, which refresh through a loopback fake of STS and IAM Credentials
(tests/test_credentials.py) with the step token they read from the exported file."""

import base64
import hashlib
import json
import logging
import os
import shutil
import socketserver
import stat
import subprocess
import sys
import tempfile
import threading
import warnings
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import google.auth
import pytest
from google.auth import identity_pool, impersonated_credentials
from google.auth.transport import requests as google_requests

from pipe import config, export, google_registries
from pipe.errors import PipeError
from tests.support.google_tools import GCLOUD, gcloud_env
from tests.test_credentials import FakeGoogle, serving, step_token

PROVIDER = "projects/123456789012/locations/global/workloadIdentityPools/bitbucket/providers/acme"
SA = "puller@my-proj.iam.gserviceaccount.com"
HOP = "ci-broker@shared-proj.iam.gserviceaccount.com"
IMAGE = "europe-west2-docker.pkg.dev/my-proj/tools/builder:1.4"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
ACCESS_TOKEN = "at-" + "0123456789abcdef" * 3
ID_TOKEN = "hdr0123456789.pld0123456789abcdef.sig0123456789abcdef"
FILE_VARIABLES = ("GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE", "GOOGLE_ACCESS_TOKEN_FILE",
                  "GOOGLE_ID_TOKEN_FILE")
DOCKER = shutil.which("docker")


def settings(clone: Path, **variables) -> config.Config:
    env = {"WORKLOAD_IDENTITY_PROVIDER": PROVIDER, "SERVICE_ACCOUNT": SA, "IMAGE": IMAGE, "BITBUCKET_CLONE_DIR": str(clone),
           "EXPORT_CREDENTIALS": "true", **variables}
    return config.load({name: value for name, value in env.items() if value is not None}, clone)


@pytest.fixture
def clone(tmp_path):
    directory = tmp_path / "clone"
    directory.mkdir()
    return directory


def exported(env_file: Path, shell: str = "sh") -> dict[str, str]:
    """What sourcing the file exports, as the shell itself reads it (a clean environment, then `env -0`)."""
    script = '. "$1" && env -0'
    out = subprocess.run([shell, "-c", script, shell, str(env_file)], capture_output=True, check=True,
                         env={"PATH": os.environ["PATH"]}, cwd=env_file.parent).stdout
    names = {"PATH", "PWD", "OLDPWD", "SHLVL", "_"}
    return {k: v for k, v in (item.decode().split("=", 1) for item in out.split(b"\0") if item) if k not in names}


def printed(env_file: Path, *names: str, shell: str = "sh", cwd: Path | None = None) -> list[str]:
    """Each variable after `. env`, printed by the shell with printf %s: exactly its value, line breaks included."""
    script = '. "$1" && printf "%s\\0" ' + " ".join(f'"${name}"' for name in names)
    out = subprocess.run([shell, "-c", script, shell, str(env_file)], capture_output=True, check=True,
                         env={"PATH": os.environ["PATH"]}, cwd=cwd or env_file.parent).stdout
    return out.decode().split("\0")[:-1]


# --- the files, their modes, and where they go ----------------------------------------------------------------------------

@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_the_files_are_private_whatever_the_umask(clone, umask):
    """0600 files in 0700 directories from the module itself: the pipe's own umask is not what makes them private."""
    previous = os.umask(umask)
    try:
        directory = export.export(settings(clone, ID_TOKEN_AUDIENCE="https://api.example.run.app", DELEGATES=HOP),
                                  "step.jwt.value", ACCESS_TOKEN, ID_TOKEN)
    finally:
        os.umask(previous)
    assert directory == clone / export.PIPE_PATH / "gcp"
    written = {str(path.relative_to(directory)): stat.S_IMODE(path.lstat().st_mode) for path in directory.rglob("*")}
    assert written == {"oidc-token": 0o600, "credentials.json": 0o600, "federated.json": 0o600, "access-token": 0o600,
                       "id-token": 0o600, "env": 0o600, "docker": 0o700, "docker/config.json": 0o600}
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for ancestor in directory.relative_to(clone).parents:  # created on the way: nobody else may write there
        if ancestor != Path("."):
            assert stat.S_IMODE((clone / ancestor).stat().st_mode) & 0o022 == 0, ancestor
    assert all(path.stat().st_uid == os.geteuid() for path in directory.rglob("*"))


def test_each_token_file_holds_exactly_the_token(clone):
    directory = export.export(settings(clone, ID_TOKEN_AUDIENCE="https://api.example.run.app"), "step.jwt.value", ACCESS_TOKEN, ID_TOKEN)
    assert (directory / "oidc-token").read_bytes() == b"step.jwt.value"
    assert (directory / "access-token").read_bytes() == ACCESS_TOKEN.encode()
    assert (directory / "id-token").read_bytes() == ID_TOKEN.encode()
    files = printed(directory / "env", "GOOGLE_ACCESS_TOKEN_FILE", "GOOGLE_ID_TOKEN_FILE")
    assert files == [str(directory / "access-token"), str(directory / "id-token")]
    # `$(cat "$GOOGLE_ID_TOKEN_FILE")`, as the README's curl line uses it, is the token alone
    script = '. "$1" && printf "Bearer %s" "$(cat "$GOOGLE_ID_TOKEN_FILE")"'
    header = subprocess.run(["sh", "-c", script, "sh", str(directory / "env")], capture_output=True, check=True, text=True).stdout
    assert header == f"Bearer {ID_TOKEN}"


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path below root: its kind, mode and content digest (links as their target, never followed)."""
    found = {}
    for path in [root, *root.rglob("*")]:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            found[str(path)] = ("link", os.readlink(path))
        elif stat.S_ISDIR(info.st_mode):
            found[str(path)] = ("dir", stat.S_IMODE(info.st_mode))
        else:
            found[str(path)] = ("file", stat.S_IMODE(info.st_mode), hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def test_nothing_is_written_outside_the_export_folder(tmp_path, clone, monkeypatch):
    (clone / "src").mkdir()
    (clone / "src" / "main.py").write_text("print('hi')\n")
    (clone / "README.md").write_text("readme\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "notes").write_text("x\n")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)  # nothing relative to the working directory either
    before = snapshot(tmp_path)
    cfg = settings(clone, ID_TOKEN_AUDIENCE="https://api.example.run.app", DELEGATES=HOP)
    directory = export.export(cfg, "step.jwt.value", ACCESS_TOKEN, ID_TOKEN)
    export.export(cfg, "step.jwt.again", ACCESS_TOKEN + "2", ID_TOKEN)  # a second run in the step replaces, no more
    after = snapshot(tmp_path)
    changed = {path for path in after if before.get(path) != after[path]}
    ancestors = {str(clone / part) for part in directory.relative_to(clone).parents if part != Path(".")}
    assert {path for path in changed if not path.startswith(str(directory))} == ancestors
    assert all(after[path][0] == "dir" for path in ancestors)
    assert set(before) - set(after) == set()  # nothing removed either
    secrets = [b"step.jwt", ACCESS_TOKEN.encode(), ID_TOKEN.encode()]
    holding = [path for path, kind in after.items() if kind[0] == "file" and any(s in Path(path).read_bytes() for s in secrets)]
    assert holding and all(path.startswith(str(directory) + os.sep) for path in holding)


@pytest.mark.parametrize("storage", ["custom/store", "{clone}/.bitbucket/pipelines/generated/pipeline/pipes/acme/pipe"])
def test_bitbuckets_storage_dir_is_where_the_files_go(clone, storage):
    storage_dir = storage.format(clone=clone)
    cfg = settings(clone, BITBUCKET_PIPE_STORAGE_DIR=storage_dir)
    directory = export.export(cfg, "step.jwt.value", ACCESS_TOKEN, None)
    assert directory == (clone / storage_dir) / "gcp" == export.export_dir(cfg)
    assert export.run_dir(cfg) == directory.with_name("gcp-run")
    assert not (clone / export.PIPE_PATH).exists()
    assert printed(directory / "env", "GOOGLE_APPLICATION_CREDENTIALS") == [str(directory / "credentials.json")]


def test_a_second_export_leaves_nothing_of_the_first(clone):
    """An ID token or a chain file from an earlier run must not outlive the settings that wrote it."""
    first = export.export(settings(clone, ID_TOKEN_AUDIENCE="https://api.example.run.app", DELEGATES=HOP),
                          "step.jwt.value", ACCESS_TOKEN, ID_TOKEN)
    (first / "stray").write_text("left by a script")
    second = export.export(settings(clone), "step.jwt.other", "at-second-0123456789", None)
    assert second == first
    assert sorted(p.name for p in second.iterdir()) == ["access-token", "credentials.json", "docker", "env", "oidc-token"]
    variables = exported(second / "env")
    assert "GOOGLE_ID_TOKEN_FILE" not in variables and "CLOUDSDK_AUTH_IMPERSONATE_SERVICE_ACCOUNT" not in variables
    assert variables["CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE"] == str(second / "credentials.json")
    assert (second / "oidc-token").read_text() == "step.jwt.other"


# --- links -----------------------------------------------------------------------------------------------------------

def test_a_link_on_the_way_is_refused_even_when_it_points_inside_the_clone(clone):
    elsewhere = clone / "elsewhere"
    elsewhere.mkdir()
    (clone / ".bitbucket").mkdir()
    (clone / ".bitbucket" / "pipelines").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(PipeError) as refused:
        export.export(settings(clone), "step.jwt.value", ACCESS_TOKEN, None)
    assert refused.value.message.startswith(f"{clone / '.bitbucket' / 'pipelines'} is a symbolic link")
    assert "\n" not in refused.value.message and list(elsewhere.iterdir()) == []


def test_links_left_in_an_earlier_export_are_removed_never_followed(tmp_path, clone):
    directory = export.export(settings(clone), "step.jwt.value", ACCESS_TOKEN, None)
    victim_file, victim_dir = tmp_path / "victim", tmp_path / "victim-dir"
    victim_file.write_text("precious\n")
    victim_dir.mkdir()
    (victim_dir / "config.json").write_text("{}")
    for name in ("oidc-token", "access-token"):
        (directory / name).unlink()
        (directory / name).symlink_to(victim_file)
    shutil.rmtree(directory / "docker")
    (directory / "docker").symlink_to(victim_dir, target_is_directory=True)
    again = export.export(settings(clone), "step.jwt.new", "at-new-0123456789abcdef", None)
    assert victim_file.read_text() == "precious\n" and [p.name for p in victim_dir.iterdir()] == ["config.json"]
    assert (victim_dir / "config.json").read_text() == "{}"
    assert not (again / "docker").is_symlink() and (again / "docker").is_dir() and not (again / "oidc-token").is_symlink()
    assert (again / "oidc-token").read_text() == "step.jwt.new"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")
def test_a_directory_on_the_way_owned_by_another_user_is_refused(clone):
    (clone / ".bitbucket").mkdir()
    os.chown(clone / ".bitbucket", 12345, 12345)
    with pytest.raises(PipeError) as refused:
        export.export(settings(clone), "step.jwt.value", ACCESS_TOKEN, None)
    assert refused.value.message.startswith(f"{clone / '.bitbucket'} belongs to user 12345, not to the pipe's user 0")
    assert list((clone / ".bitbucket").iterdir()) == []


def test_a_directory_on_the_way_others_may_write_to_is_made_private_first(clone):
    (clone / ".bitbucket" / "pipelines").mkdir(parents=True)
    for path in (clone / ".bitbucket", clone / ".bitbucket" / "pipelines"):
        os.chmod(path, 0o777)
    export.export(settings(clone), "step.jwt.value", ACCESS_TOKEN, None)
    for path in (clone / ".bitbucket", clone / ".bitbucket" / "pipelines"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o755, path


# --- the env file, through a real shell ------------------------------------------------------------------------------

AWKWARD = {
    "single quote": "it's",
    "double quotes": 'say "hi"',
    "dollar": "cost $HOME ${PATH} $1",
    "command substitution": "$(touch PWNED) and `touch PWNED`",
    "line breaks": "line\nbreak\n",
    "backslashes": "back\\slash\\n\\",
    "glob and separators": "glob * ? [ab] ; & | < > # ~",
    "leading dash and spaces": "-n  two  spaces\t",
    "unicode": "ünïcødé ✓ \u202e",
}


@pytest.mark.parametrize("shell", ["sh", "bash"])
@pytest.mark.parametrize("name", AWKWARD.values(), ids=AWKWARD.keys())
def test_every_value_round_trips_through_the_shell(tmp_path, name, shell):
    """A clone directory with any name (Bitbucket chooses it, but self-hosted runners let anyone): sourcing the file
    sets each path exactly, runs nothing, and each path names the file written."""
    clone = tmp_path / name
    clone.mkdir()
    cfg = settings(clone, ID_TOKEN_AUDIENCE="https://api.example.run.app", DELEGATES=HOP)
    directory = export.export(cfg, "step.jwt.value", ACCESS_TOKEN, ID_TOKEN)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    names = (*FILE_VARIABLES, "DOCKER_CONFIG", "CLOUDSDK_AUTH_IMPERSONATE_SERVICE_ACCOUNT", "GOOGLE_CLOUD_PROJECT")
    values = printed(directory / "env", *names, shell=shell, cwd=work)
    assert values == [str(directory / "credentials.json"), str(directory / "federated.json"), str(directory / "access-token"),
                      str(directory / "id-token"), str(directory / "docker"), f"{HOP},{SA}", "my-proj"]
    assert not list(work.iterdir())  # `$(…)` and backquotes in a value were never run
    script = '. "$1" && for f in "$GOOGLE_APPLICATION_CREDENTIALS" "$GOOGLE_ID_TOKEN_FILE" "$DOCKER_CONFIG/config.json"; do test -f "$f" || exit 3; done'
    subprocess.run([shell, "-c", script, shell, str(directory / "env")], check=True, cwd=work)
    assert json.loads((directory / "credentials.json").read_text())["source_credentials"]["credential_source"]["file"] == str(
        directory / "oidc-token")


def test_sourcing_changes_nothing_but_the_exports(clone):
    directory = export.export(settings(clone), "step.jwt.value", ACCESS_TOKEN, None)
    text = (directory / "env").read_text()
    assert text.endswith("\n") and all(line.startswith("export ") for line in text.splitlines())
    script = '. "$1"; status=$?; printf "%s|%s|%s" "$status" "$PATH" "$HOME"'
    result = subprocess.run(["sh", "-c", script, "sh", str(directory / "env")], capture_output=True, text=True,
                            env={"PATH": os.environ["PATH"], "HOME": "/home/step"})
    assert (result.stdout, result.stderr) == (f"0|{os.environ['PATH']}|/home/step", "")


# --- the docker config, read by the docker CLI ----------------------------------------------------------------------------

class _EngineAPI(BaseHTTPRequestHandler):
    """Just enough of the Engine API for `docker login` with stored credentials: the version ping, and /auth, which
    records what the CLI would present to the registry."""

    protocol_version = "HTTP/1.1"

    def _reply(self, body: bytes, kind: str):
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Api-Version", "1.41")
        self.send_header("OSType", "linux")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):  # noqa: N802 (http.server's naming)
        self._reply(b"OK", "text/plain")

    do_GET = do_HEAD  # noqa: N815

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.endswith("/auth"):
            self.server.logins.append(json.loads(body))
        self._reply(json.dumps({"Status": "Login Succeeded", "IdentityToken": ""}).encode(), "application/json")

    def address_string(self):
        return "unix"

    def log_message(self, *args):
        pass


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture(scope="module")
def engine():
    """The stand-in's socket, in a short path (a unix socket's path is limited to 107 bytes)."""
    if DOCKER is None:
        pytest.skip("the docker CLI is not installed")
    with tempfile.TemporaryDirectory(prefix="dk") as folder:
        server = _UnixServer(f"{folder}/engine.sock", _EngineAPI)
        server.logins, server.home = [], folder  # HOME for the CLI: nothing it keeps lands in an export
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        thread.start()
        try:
            yield server
        finally:
            server.shutdown()
            server.server_close()
            thread.join()


def docker_login(engine, env_file: Path, host: str) -> tuple[subprocess.CompletedProcess, dict | None]:
    """`docker login HOST` after `. env`, as a later line of the step runs it: what the CLI printed, and what it
    presented (None when it found no credentials for HOST)."""
    engine.logins.clear()
    result = subprocess.run(["sh", "-c", '. "$1" && exec docker login "$2"', "sh", str(env_file), host], capture_output=True,
                            text=True, stdin=subprocess.DEVNULL, timeout=60,
                            env={"PATH": os.environ["PATH"], "HOME": engine.home, "DOCKER_HOST": f"unix://{engine.server_address}"})
    return result, (engine.logins[0] if engine.logins else None)


def test_the_docker_cli_presents_the_access_token_to_each_covered_host_and_no_other(engine, clone):
    cfg = settings(clone, REGISTRIES="registry.example.com:5443,us-docker.pkg.dev")
    directory = export.export(cfg, "step.jwt.value", ACCESS_TOKEN, None)
    covered = sorted({*google_registries.DEFAULT_DOCKER_HOSTS, "europe-west2-docker.pkg.dev", "registry.example.com:5443"})
    assert sorted(json.loads((directory / "docker" / "config.json").read_text())["auths"]) == covered
    for host in covered:
        result, presented = docker_login(engine, directory / "env", host)
        assert result.returncode == 0 and "Login Succeeded" in result.stdout, (host, result.stderr)
        assert presented == {"username": google_registries.USERNAME, "password": ACCESS_TOKEN, "serveraddress": host}
    for host in ("ghcr.io", "us-central1-docker.pkg.dev", "registry.example.com"):  # another port is another registry
        result, presented = docker_login(engine, directory / "env", host)
        assert result.returncode != 0 and presented is None, host


def test_the_docker_cli_reads_the_config_in_an_awkward_clone(engine, tmp_path):
    clone = tmp_path / "it's $HOME\nand `more`"
    clone.mkdir()
    directory = export.export(settings(clone), "step.jwt.value", ACCESS_TOKEN, None)
    result, presented = docker_login(engine, directory / "env", "gcr.io")
    assert presented == {"username": google_registries.USERNAME, "password": ACCESS_TOKEN, "serveraddress": "gcr.io"}, result.stderr
    assert "WARNING" not in result.stderr  # e.g. "Error parsing config file"


def test_docker_hosts_are_each_listed_once():
    cfg = config.load({"WORKLOAD_IDENTITY_PROVIDER": PROVIDER, "IMAGE": "gcr.io/my-proj/tool:1",
                       "REGISTRIES": "gcr.io,eu.gcr.io,registry.example.com"}, Path("/b"))
    hosts = export.docker_hosts(cfg)
    assert hosts == sorted(set(hosts)) and set(hosts) == {*google_registries.DEFAULT_DOCKER_HOSTS, "registry.example.com"}
    auths = json.loads(export.docker_config(hosts, ACCESS_TOKEN))["auths"]
    assert {base64.b64decode(entry["auth"]).decode() for entry in auths.values()} == {f"oauth2accesstoken:{ACCESS_TOKEN}"}


# --- the credential configuration, read by Google's clients -----------------------------------------------------------------

@pytest.fixture
def fake_google():
    with serving(FakeGoogle()) as fake:
        yield fake


def endpoints(fake: FakeGoogle) -> dict:
    return {"STS_ENDPOINT": fake.url, "IAM_CREDENTIALS_ENDPOINT": fake.url}


def loaded(path: Path):
    """google-auth's reading of a credential file, scoped afterwards: loading with scopes would first ask
    cloudresourcemanager.googleapis.com for the project, off this machine."""
    with warnings.catch_warnings():  # google-auth warns against loading a file of unknown type; ours is known
        warnings.simplefilter("ignore", DeprecationWarning)
        credentials, project = google.auth.load_credentials_from_file(str(path))
    assert project is None and isinstance(credentials, identity_pool.Credentials)
    return credentials.with_scopes([CLOUD_PLATFORM])


@pytest.mark.parametrize("variables, lifetime", [({}, "3600s"), ({"ACCESS_TOKEN_LIFETIME": "1800s"}, "1800s")])
def test_google_auth_refreshes_from_the_file_with_the_step_token_it_names(fake_google, clone, variables, lifetime):
    step = step_token()
    directory = export.export(settings(clone, **endpoints(fake_google), **variables), step.value, ACCESS_TOKEN, None)
    credentials = loaded(directory / "credentials.json")
    credentials.refresh(google_requests.Request())
    assert credentials.token == fake_google.impersonated and credentials.service_account_email == SA
    sts, iam = fake_google.requests
    assert sts.form()["subject_token"] == step.value and sts.form()["audience"] == "//iam.googleapis.com/" + PROVIDER
    assert iam.path.endswith(f"/serviceAccounts/{SA}:generateAccessToken") and iam.json()["lifetime"] == lifetime


def test_google_auth_refreshes_a_direct_federation_file(fake_google, clone):
    step = step_token()
    directory = export.export(settings(clone, SERVICE_ACCOUNT=None, **endpoints(fake_google)), step.value, ACCESS_TOKEN, None)
    credentials = loaded(directory / "credentials.json")
    credentials.refresh(google_requests.Request())
    [sts] = fake_google.requests
    assert credentials.token == fake_google.federated
    assert sts.form()["subject_token"] == step.value and sts.form()["scope"] == CLOUD_PLATFORM


def test_application_default_credentials_after_sourcing_env(fake_google, clone):
    """A later line of the step: `source env; python3 deploy.py` with google.auth.default()."""
    directory = export.export(settings(clone, **endpoints(fake_google)), step_token().value, ACCESS_TOKEN, None)
    program = ("import google.auth, google.auth.transport.requests as r\n"
               f"credentials, project = google.auth.default(scopes=[{CLOUD_PLATFORM!r}])\n"
               "credentials.refresh(r.Request())\n"
               "print(project, credentials.token)\n")
    result = subprocess.run(["sh", "-c", '. "$1" && exec "$2" -c "$3"', "sh", str(directory / "env"), sys.executable, program],
                            capture_output=True, text=True, timeout=60, env={"PATH": os.environ["PATH"], "HOME": str(clone)})
    assert result.stdout.split() == ["my-proj", fake_google.impersonated], result.stderr
    assert fake_google.routes() == ["sts", "generateAccessToken"]


def test_the_readmes_python_chain_works_from_the_exported_file(fake_google, clone):
    """README, 'Python with DELEGATES': the chain file, built into credentials as the README shows."""
    step = step_token()
    directory = export.export(settings(clone, DELEGATES=HOP, **endpoints(fake_google)), step.value, ACCESS_TOKEN, None)
    chain = json.loads((directory / "credentials.json").read_text())
    credentials = impersonated_credentials.Credentials(
        source_credentials=identity_pool.Credentials.from_info(chain["source_credentials"]),
        target_principal=chain["service_account_impersonation_url"].rsplit("/", 1)[1].split(":")[0],
        delegates=chain["delegates"],
        target_scopes=[CLOUD_PLATFORM],
        iam_endpoint_override=chain["service_account_impersonation_url"],
    )
    credentials.refresh(google_requests.Request())
    sts, iam = fake_google.requests
    assert credentials.token == fake_google.impersonated and sts.form()["subject_token"] == step.value
    assert iam.json()["delegates"] == [f"projects/-/serviceAccounts/{HOP}"] and iam.path.endswith(f"{SA}:generateAccessToken")
    assert json.loads((directory / "federated.json").read_text()) == chain["source_credentials"]


@pytest.mark.skipif(GCLOUD is None, reason="gcloud is not installed")
@pytest.mark.parametrize("delegates", [None, HOP], ids=["service account", "delegates"])
def test_gcloud_prints_the_service_accounts_token_after_sourcing_env(fake_google, tmp_path, clone, delegates):
    step = step_token()
    directory = export.export(settings(clone, DELEGATES=delegates, **endpoints(fake_google)), step.value, ACCESS_TOKEN, None)
    result = subprocess.run(["sh", "-c", '. "$1" && exec gcloud auth print-access-token', "sh", str(directory / "env")],
                            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                            env=gcloud_env(tmp_path / "gcloud", CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK="true"))
    assert result.stdout.strip() == fake_google.impersonated, result.stderr[-2000:]
    sts, iam = (next(r for r in fake_google.requests if r.route == route) for route in ("sts", "generateAccessToken"))
    assert sts.form()["subject_token"] == step.value
    assert iam.path.endswith(f"/serviceAccounts/{SA}:generateAccessToken")  # the target, through the chain
    assert [d.rpartition("/")[2] for d in iam.json().get("delegates") or []] == ([HOP] if delegates else [])


@pytest.mark.skipif(GCLOUD is None, reason="gcloud is not installed")
@pytest.mark.parametrize("variables, flags", [
    ({}, ["--service-account=" + SA]),
    ({"ACCESS_TOKEN_LIFETIME": "1800s"}, ["--service-account=" + SA, "--service-account-token-lifetime-seconds=1800"]),
    ({"SERVICE_ACCOUNT": None}, []),
], ids=["service account", "lifetime", "direct federation"])
def test_the_configuration_is_byte_for_byte_what_gcloud_writes(tmp_path, variables, flags):
    """README: credentials.json is what `gcloud iam workload-identity-pools create-cred-config` writes (a local command:
    gcloud needs no account for it), here in a clone whose path needs escaping in JSON."""
    clone = tmp_path / 'ü "clone"'
    clone.mkdir()
    directory = export.export(settings(clone, **variables), "step.jwt.value", ACCESS_TOKEN, None)
    written = tmp_path / "gcloud.json"
    result = subprocess.run(
        [GCLOUD, "iam", "workload-identity-pools", "create-cred-config", PROVIDER, *flags, f"--output-file={written}",
         f"--credential-source-file={directory / 'oidc-token'}", "--credential-source-type=text"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, env=gcloud_env(tmp_path / "gcloud"))
    assert result.returncode == 0, result.stderr
    assert (directory / "credentials.json").read_bytes() == written.read_bytes()


# --- the run container's files ----------------------------------------------------------------------------------------

def test_the_run_container_gets_the_exports_configuration_at_its_own_paths(clone):
    cfg = settings(clone, GOOGLE_CREDENTIALS_IN_CONTAINER="true", DELEGATES=HOP)
    directory = export.export(cfg, "step.jwt.value", ACCESS_TOKEN, None)
    with export.container_credentials(cfg, "step.jwt.value", None) as (mounts, environment):
        inside = {mount["bind"]: Path(source) for source, mount in mounts.items()}
        assert all(mount["mode"] == "ro" for mount in mounts.values())
        assert inside[f"{export.INSIDE}/oidc-token"].read_text() == "step.jwt.value"
        for name in ("credentials.json", "federated.json"):
            text = inside[f"{export.INSIDE}/{name}"].read_text()
            assert text == (directory / name).read_text().replace(str(directory), export.INSIDE)
        assert environment["GOOGLE_APPLICATION_CREDENTIALS"] == f"{export.INSIDE}/credentials.json"
        assert environment["GOOGLE_CLOUD_PROJECT"] == "my-proj"
        assert not any(ACCESS_TOKEN in path.read_text() for path in inside.values())  # only what refreshes, no access token
    assert not export.run_dir(cfg).exists() and (directory / "env").exists()  # the export is left as it was


@pytest.mark.parametrize("user", ["9" * 5000, "1000:" + "9" * 4400, "12345678901"])
def test_an_absurd_numeric_user_from_the_image_is_one_short_line(user):
    """The image chooses USER: its digits are bounded before any conversion (Python refuses to read over 4300) and
    shown cut to a bound."""
    with pytest.raises(PipeError) as refused:
        export.numeric_owner(user)
    assert "no user a container can run as" in refused.value.message and len(refused.value.message) < 300


def test_a_long_user_name_from_the_image_is_shown_bounded(clone, caplog):
    with caplog.at_level(logging.WARNING, logger="pipe"), export.container_credentials(settings(clone), "step.jwt.value", "a" * 3000):
        pass
    [warning] = [r.getMessage() for r in caplog.records if "runs as user" in r.getMessage()]
    assert len(warning) < 400 and "a" * 81 not in warning


def test_every_pipes_export_directory_in_the_clone_is_found_and_nothing_behind_a_link(clone, tmp_path):
    """Another reference of the pipe (a fork, a pinned older version) exports into its own storage directory beside
    this one: the run container must see none of them, and a killed run's leftovers beside any are removed."""
    pipes = clone / ".bitbucket/pipelines/generated/pipeline/pipes"
    (pipes / "myorg" / "keyless-fork" / "gcp").mkdir(parents=True)
    (pipes / "keyless-gcp" / "google-cloud-keyless").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "pipe" / "gcp").mkdir(parents=True)
    (pipes / "linked").symlink_to(elsewhere)  # a link planted in the clone: never followed
    found = export.every_export_dir(settings(clone))
    assert found[0] == export.export_dir(settings(clone))  # this run's own first
    assert pipes / "myorg" / "keyless-fork" / "gcp" in found
    assert not [path for path in found if "linked" in str(path)]
