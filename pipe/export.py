"""Credentials for the rest of the step (EXPORT_CREDENTIALS) and for the run container.

Files go to the pipe's storage directory, created 0600 with O_EXCL in a private 0700 directory,
so nothing lands in the workspace root where it could be committed or declared as an artifact.
"""

import base64
import json
import os
import shutil
from pathlib import Path

from pipe import credential_config
from pipe.config import Config

PIPE_PATH = Path(".bitbucket/pipelines/generated/pipeline/pipes/keyless-gcp/google-cloud-keyless")
# Multi-region Artifact Registry and Container Registry hosts; regional hosts come from IMAGE and REGISTRIES.
DEFAULT_DOCKER_HOSTS = ("us-docker.pkg.dev", "europe-docker.pkg.dev", "asia-docker.pkg.dev",
                        "gcr.io", "us.gcr.io", "eu.gcr.io", "asia.gcr.io")


def write_private(path: Path, content: str) -> Path:
    """Create exclusively (never follow or overwrite an existing file or link), owner-only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    return path


def fresh_private_dir(path: Path) -> Path:
    """Our own directory, emptied of a previous run's files in the same step."""
    if path.is_symlink():
        path.unlink()
    shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir(mode=0o700)
    return path


def storage_dir(cfg: Config) -> Path:
    return (cfg.storage_dir or cfg.clone_dir / PIPE_PATH) / "gcp"


def docker_hosts(cfg: Config) -> list[str]:
    hosts = list(DEFAULT_DOCKER_HOSTS) + list(cfg.registries)
    if cfg.image:
        hosts.append(cfg.image.host)
    return sorted(set(hosts))


def docker_config(hosts: list[str], access_token: str) -> str:
    auth = base64.b64encode(f"oauth2accesstoken:{access_token}".encode()).decode()
    return json.dumps({"auths": {host: {"auth": auth} for host in hosts}}, indent=2)


def export(cfg: Config, step_token: str, access_token: str, id_token: str | None) -> Path:
    """Write the files and the `env` script that points gcloud, client libraries and docker at them."""
    directory = fresh_private_dir(storage_dir(cfg))
    token_file = write_private(directory / "oidc-token", step_token)
    credentials = write_private(directory / "credentials.json",
                                json.dumps(credential_config.render(cfg, str(token_file)), indent=2))
    (directory / "docker").mkdir(mode=0o700)
    write_private(directory / "docker" / "config.json", docker_config(docker_hosts(cfg), access_token))
    write_private(directory / "access-token", access_token)
    variables = {
        "GOOGLE_APPLICATION_CREDENTIALS": credentials,
        "CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE": credentials,
        "DOCKER_CONFIG": directory / "docker",
        "GOOGLE_ACCESS_TOKEN_FILE": directory / "access-token",
    }
    if id_token:
        variables["GOOGLE_ID_TOKEN_FILE"] = write_private(directory / "id-token", id_token)
    if cfg.project_id:
        for name in ("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT", "CLOUDSDK_PROJECT", "GCLOUD_PROJECT", "GCP_PROJECT"):
            variables[name] = cfg.project_id
    lines = [f"export {name}={_quote(str(value))}" for name, value in variables.items()]
    write_private(directory / "env", "\n".join(lines) + "\n")
    return directory


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def numeric_owner(user: str | None) -> tuple[int, int] | None:
    """The uid:gid an image's USER names, when numeric (names would need the image's /etc/passwd)."""
    uid, _, gid = (user or "").partition(":")
    if uid.isascii() and uid.isdigit() and (not gid or (gid.isascii() and gid.isdigit())):
        return int(uid), int(gid or uid)
    return None


def container_credentials(cfg: Config, step_token: str, owner: tuple[int, int] | None = None,
                          inside: str = "/var/run/google-cloud") -> tuple[Path, dict, dict]:
    """Files for GOOGLE_CREDENTIALS_IN_CONTAINER: a private dir under the clone (the daemon only sees the
    clone), each file bind-mounted read-only into the container and owned by the image's user, still 0600.
    The caller removes the dir afterwards."""
    directory = fresh_private_dir(storage_dir(cfg).with_name("gcp-run"))
    write_private(directory / "oidc-token", step_token)
    config = credential_config.render(cfg, f"{inside}/oidc-token")
    write_private(directory / "credentials.json", json.dumps(config, indent=2))
    if owner:
        for name in ("oidc-token", "credentials.json"):
            os.chown(directory / name, *owner)
    mounts = {str(directory / name): {"bind": f"{inside}/{name}", "mode": "ro"} for name in ("oidc-token", "credentials.json")}
    environment = {
        "GOOGLE_APPLICATION_CREDENTIALS": f"{inside}/credentials.json",
        "CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE": f"{inside}/credentials.json",
    }
    if cfg.project_id:
        environment.update(GOOGLE_CLOUD_PROJECT=cfg.project_id, CLOUDSDK_CORE_PROJECT=cfg.project_id)
    return directory, mounts, environment


