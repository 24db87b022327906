"""Credentials for the rest of the step (EXPORT_CREDENTIALS) and for the run container.

Files go to the pipe's storage directory inside the clone, created 0600 with O_EXCL in a private 0700 directory, so
nothing lands in the workspace root where it could be committed or declared as an artifact; pipe.clone_dirs walks
there without following links and removes what the run container may leave.
"""

import base64
import errno
import json
import logging
import os
import shlex
import stat
from contextlib import ExitStack, contextmanager
from pathlib import Path

from pipe import clone_dirs, google_registries, pipe_cred_config, shown, stopping
from pipe.config import Config
from pipe.errors import PipeError

PIPE_PATH = Path(".bitbucket/pipelines/generated/pipeline/pipes/keyless-gcp/google-cloud-keyless")
MAX_ID = 2**32 - 2  # (uid_t)-1 means "unchanged" to chown, so the largest usable id is one less
INSIDE = "/var/run/google-cloud"
log = logging.getLogger("pipe")


def export_dir(cfg: Config) -> Path:
    """Where EXPORT_CREDENTIALS writes: inside the clone, which is all the daemon and the next commands can see.

    The run container must not see it unless GOOGLE_CREDENTIALS_IN_CONTAINER: the caller masks this path."""
    clone = Path(os.path.normpath(cfg.clone_dir))
    base = Path(os.path.normpath(clone / cfg.storage_dir)) if cfg.storage_dir else clone / PIPE_PATH
    if base == clone or not base.is_relative_to(clone):
        raise PipeError(f"BITBUCKET_PIPE_STORAGE_DIR ({cfg.storage_dir}) is not inside the clone directory {clone}: "
                        "leave it to Bitbucket, which sets it below the clone.")
    return base / "gcp"


def export_dir_or_none(cfg: Config) -> Path | None:
    """Where an earlier run may have exported; None when exports cannot go there (the pipe refuses to write them)."""
    try:
        return export_dir(cfg)
    except PipeError:
        return None


def every_export_dir(cfg: Config) -> list[Path]:
    """This run's export directory and every other pipe's in the clone (another reference of this pipe, a fork, gets
    its own BITBUCKET_PIPE_STORAGE_DIR beside it): the run container sees none, and what a killed run left in any is
    removed. Only real directories count; nothing below a link is looked at."""
    clone = Path(os.path.normpath(cfg.clone_dir))
    found = [own] if (own := export_dir_or_none(cfg)) else []
    pipes = clone / PIPE_PATH.parent.parent  # …/pipes/<account>/<pipe>
    if not _real_directory(clone, pipes):
        return found
    for account in _subdirectories(pipes):
        for pipe in _subdirectories(account):
            if (pipe / "gcp") not in found:
                found.append(pipe / "gcp")
    return found


def _real_directory(clone: Path, path: Path) -> bool:
    current = clone
    for part in path.relative_to(clone).parts:
        current = current / part
        try:
            if not stat.S_ISDIR(os.lstat(current).st_mode):
                return False
        except OSError:
            return False
    return True


def _subdirectories(directory: Path) -> list[Path]:
    try:
        with os.scandir(directory) as entries:
            return sorted(Path(e.path) for e in entries if e.is_dir(follow_symlinks=False))
    except OSError:
        return []


def run_dir(cfg: Config) -> Path:
    """The run container's credential files (GOOGLE_CREDENTIALS_IN_CONTAINER), next to the export directory."""
    return export_dir(cfg).with_name(clone_dirs.RUN_DIR)


def docker_hosts(cfg: Config) -> list[str]:
    """Google's multi-region Artifact Registry and Container Registry hosts, IMAGE's host and REGISTRIES."""
    hosts = list(google_registries.DEFAULT_DOCKER_HOSTS) + list(cfg.registries)
    if cfg.image:
        hosts.append(cfg.image.host)
    return sorted(set(hosts))


def docker_config(hosts: list[str], access_token: str) -> str:
    auth = base64.b64encode(f"{google_registries.USERNAME}:{access_token}".encode()).decode()
    return json.dumps({"auths": {host: {"auth": auth} for host in hosts}}, indent=2)


def export(cfg: Config, step_token: str, access_token: str, id_token: str | None) -> Path:
    """Write the files and the `env` script that points gcloud, client libraries and docker at them."""
    target = export_dir(cfg)
    with clone_dirs.parent_of(cfg.clone_dir, target) as parent, ExitStack() as stack:
        directory = parent.fresh(target.name)
        stack.callback(directory.close)
        token_file = directory.write("oidc-token", step_token)
        for name, config in pipe_cred_config.files(cfg, str(token_file)).items():
            directory.write(name, _formatted(config))
        docker = directory.child("docker", 0o700)
        stack.callback(docker.close)
        variables = {
            **pipe_cred_config.variables(cfg, str(directory.path)),
            "DOCKER_CONFIG": docker.path,
            "GOOGLE_ACCESS_TOKEN_FILE": directory.write("access-token", access_token),
        }
        docker.write("config.json", docker_config(docker_hosts(cfg), access_token))
        if id_token:
            variables["GOOGLE_ID_TOKEN_FILE"] = directory.write("id-token", id_token)
        if cfg.project_id:
            for name in ("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT", "CLOUDSDK_PROJECT", "GCLOUD_PROJECT", "GCP_PROJECT"):
                variables[name] = cfg.project_id
        directory.write("env", "".join(f"export {name}={shlex.quote(str(value))}\n" for name, value in variables.items()))
        return directory.path


def _formatted(config: dict) -> str:
    return json.dumps(config, indent=2)


def numeric_owner(user: str | None) -> tuple[int, int] | None:
    """The uid:gid an image's USER names, when numeric (names would need the image's /etc/passwd)."""
    uid, _, gid = (user or "").partition(":")
    if not (uid.isascii() and uid.isdigit() and (not gid or (gid.isascii() and gid.isdigit()))):
        return None
    if max(len(uid), len(gid)) > 10 or max(owner := (int(uid), int(gid or uid))) > MAX_ID:  # the image's text: bounded first
        raise PipeError(f"The image's USER {shown.clipped(user)} is no user a container can run as (a uid and a gid go from 0 "
                        f"to {MAX_ID}): fix USER in the image's Dockerfile.")
    return owner


@contextmanager
def container_credentials(cfg: Config, step_token: str, user: str | None):
    """Files for GOOGLE_CREDENTIALS_IN_CONTAINER, yielding (mounts, environment) for the run container.

    A private dir under the clone (the daemon only sees the clone), each file bind-mounted read-only into
    the container and owned by the image's numeric USER, still 0600. The dir exists only inside this
    context: it is removed on every exit, including an exception or a signal (pipe.stopping).
    """
    owner = numeric_owner(user)
    if user and user not in ("root", "0") and owner is None:
        log.warning(f"{cfg.image.display} runs as user {shown.echo(user)}, but the credential files can only be handed to a "
                    "numeric USER (uid or uid:gid); they stay readable by root only.")
    target = run_dir(cfg)
    with clone_dirs.parent_of(cfg.clone_dir, target) as parent:
        try:
            with ExitStack() as stack:
                directory = parent.fresh(target.name)
                stack.callback(directory.close)
                directory.write("oidc-token", step_token)
                names = ["oidc-token"]
                for name, config in pipe_cred_config.files(cfg, f"{INSIDE}/oidc-token").items():
                    names.append(name)
                    directory.write(name, _formatted(config))
                if owner:
                    for name in names:
                        _chown(directory, name, owner, user, cfg.image.display)
            mounts = {str(target / name): {"bind": f"{INSIDE}/{name}", "mode": "ro"} for name in names}
            environment = pipe_cred_config.variables(cfg, INSIDE)
            if cfg.project_id:
                environment.update(GOOGLE_CLOUD_PROJECT=cfg.project_id, CLOUDSDK_CORE_PROJECT=cfg.project_id)
            yield mounts, environment
        finally:
            with stopping.uninterrupted():
                parent.remove(target.name)


def _chown(directory: clone_dirs.Dir, name: str, owner: tuple[int, int], user: str, image: str) -> None:
    try:
        os.chown(name, *owner, dir_fd=directory.fd, follow_symlinks=False)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.EPERM):
            raise
        raise PipeError(f"{image} runs as USER {shown.clipped(user)}, which the Docker daemon's user namespace does not map, so the "
                        f"credential files cannot be handed to it (chown: {error.strerror}): run the image as a uid the "
                        "daemon maps (0 to 65535 on Bitbucket's docker service; root always works), or leave "
                        "GOOGLE_CREDENTIALS_IN_CONTAINER off.") from None
