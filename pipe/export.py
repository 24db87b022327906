"""Credentials for the rest of the step (EXPORT_CREDENTIALS) and for the run container.

Files go to the pipe's storage directory inside the clone, created 0600 with O_EXCL in a private 0700
directory, so nothing lands in the workspace root where it could be committed or declared as an artifact.
The clone is the repository's content, so it is hostile ground: every directory from the clone dir down is
opened with O_NOFOLLOW relative to its parent's descriptor and every file is created relative to its
directory's descriptor, so a symbolic link planted anywhere on the way can neither be followed nor raced.
"""

import base64
import errno
import json
import logging
import os
import stat
from contextlib import ExitStack, contextmanager
from pathlib import Path

from pipe import credential_config
from pipe.config import Config
from pipe.errors import PipeError

PIPE_PATH = Path(".bitbucket/pipelines/generated/pipeline/pipes/keyless-gcp/google-cloud-keyless")
# Multi-region Artifact Registry and Container Registry hosts; regional hosts come from IMAGE and REGISTRIES.
DEFAULT_DOCKER_HOSTS = ("us-docker.pkg.dev", "europe-docker.pkg.dev", "asia-docker.pkg.dev",
                        "gcr.io", "us.gcr.io", "eu.gcr.io", "asia.gcr.io")
MAX_ID = 2**32 - 2  # (uid_t)-1 means "unchanged" to chown, so the largest usable id is one less
INSIDE = "/var/run/google-cloud"
log = logging.getLogger("pipe")


class _Dir:
    """An open directory below the clone: children are reached, created and removed relative to its descriptor."""

    def __init__(self, fd: int, path: Path):
        self.fd, self.path = fd, path

    def child(self, name: str, mode: int = 0o777) -> "_Dir":
        """The directory `name`, created if absent; refused when it is a link or not a directory."""
        try:
            os.mkdir(name, mode, dir_fd=self.fd)
        except FileExistsError:
            pass
        except OSError as error:
            raise self._refusal(name, error) from None
        return self._open(name)

    def fresh(self, name: str) -> "_Dir":
        """Our own 0700 directory `name`, emptied of a previous run's files in the same step."""
        try:
            self._remove(name, top=True)
        except FileNotFoundError:
            pass
        return self.child(name, 0o700)

    def remove(self, name: str) -> None:
        """Remove `name` and what is below it, unlinking links and never following them."""
        try:
            self._remove(name)
        except FileNotFoundError:
            pass

    def write(self, name: str, content: str) -> Path:
        """Create exclusively (never follow or overwrite an existing file or link), owner-only."""
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=self.fd)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        return self.path / name

    def close(self) -> None:
        os.close(self.fd)

    def _open(self, name: str) -> "_Dir":
        # O_NONBLOCK: a FIFO planted here must fail, not hang the step.
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            return _Dir(os.open(name, flags, dir_fd=self.fd), self.path / name)
        except FileNotFoundError:
            raise
        except OSError as error:
            raise self._refusal(name, error) from None

    def _remove(self, name: str, top: bool = False) -> None:
        if not top:
            try:
                os.unlink(name, dir_fd=self.fd)  # files, links and FIFOs alike; a directory answers EISDIR
                return
            except IsADirectoryError:
                pass
        below = self._open(name)
        try:
            for entry in os.listdir(below.fd):
                below._remove(entry)
        finally:
            below.close()
        os.rmdir(name, dir_fd=self.fd)

    def _refusal(self, name: str, error: OSError) -> PipeError:
        path = self.path / name
        if error.errno != errno.ENOTDIR:
            return PipeError(f"Cannot use {path} for the pipe's credential files ({error.strerror}): "
                             "make sure the clone directory is writable.")
        try:
            link = stat.S_ISLNK(os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mode)
        except OSError:
            link = False
        return PipeError(f"{path} is {'a symbolic link' if link else 'not a directory'}, where the pipe keeps its credential "
                         "files: remove it from the repository (the pipe never writes secrets through links or over files).")


def export_dir(cfg: Config) -> Path:
    """Where EXPORT_CREDENTIALS writes: inside the clone, which is all the daemon and the next commands can see.

    The run container must not see it unless GOOGLE_CREDENTIALS_IN_CONTAINER: the caller masks this path."""
    clone = Path(os.path.normpath(cfg.clone_dir))
    base = Path(os.path.normpath(clone / cfg.storage_dir)) if cfg.storage_dir else clone / PIPE_PATH
    if base == clone or not base.is_relative_to(clone):
        raise PipeError(f"BITBUCKET_PIPE_STORAGE_DIR ({cfg.storage_dir}) is not inside the clone directory {clone}: "
                        "leave it to Bitbucket, which sets it below the clone.")
    return base / "gcp"


def _run_dir(cfg: Config) -> Path:
    return export_dir(cfg).with_name("gcp-run")


@contextmanager
def _parent_of(cfg: Config, directory: Path):
    """The directory that holds `directory`, walked from the clone dir without following any link."""
    clone = Path(os.path.normpath(cfg.clone_dir))
    with ExitStack() as stack:
        current = _Dir(os.open(clone, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), clone)
        stack.callback(current.close)
        for name in directory.parent.relative_to(clone).parts:
            current = current.child(name)
            stack.callback(current.close)
        yield current


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
    target = export_dir(cfg)
    with _parent_of(cfg, target) as parent, ExitStack() as stack:
        directory = parent.fresh(target.name)
        stack.callback(directory.close)
        token_file = directory.write("oidc-token", step_token)
        for name, config in credential_config.files(cfg, str(token_file)).items():
            directory.write(name, _json(config))
        docker = directory.child("docker", 0o700)
        stack.callback(docker.close)
        variables = {
            **credential_config.variables(cfg, str(directory.path)),
            "DOCKER_CONFIG": docker.path,
            "GOOGLE_ACCESS_TOKEN_FILE": directory.write("access-token", access_token),
        }
        docker.write("config.json", docker_config(docker_hosts(cfg), access_token))
        if id_token:
            variables["GOOGLE_ID_TOKEN_FILE"] = directory.write("id-token", id_token)
        if cfg.project_id:
            for name in ("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT", "CLOUDSDK_PROJECT", "GCLOUD_PROJECT", "GCP_PROJECT"):
                variables[name] = cfg.project_id
        directory.write("env", "".join(f"export {name}={_quote(str(value))}\n" for name, value in variables.items()))
        return directory.path


def _json(config: dict) -> str:
    return json.dumps(config, indent=2)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def numeric_owner(user: str | None) -> tuple[int, int] | None:
    """The uid:gid an image's USER names, when numeric (names would need the image's /etc/passwd)."""
    uid, _, gid = (user or "").partition(":")
    if not (uid.isascii() and uid.isdigit() and (not gid or (gid.isascii() and gid.isdigit()))):
        return None
    owner = int(uid), int(gid or uid)
    if max(owner) > MAX_ID:
        raise PipeError(f"The image's USER {user} is no user a container can run as (a uid and a gid go from 0 to {MAX_ID}): "
                        "fix USER in the image's Dockerfile.")
    return owner


@contextmanager
def container_credentials(cfg: Config, step_token: str, user: str | None):
    """Files for GOOGLE_CREDENTIALS_IN_CONTAINER, yielding (mounts, environment) for the run container.

    A private dir under the clone (the daemon only sees the clone), each file bind-mounted read-only into
    the container and owned by the image's numeric USER, still 0600. The dir exists only inside this
    context: it is removed on every exit, including an exception or a signal (main.Stopped).
    """
    owner = numeric_owner(user)
    if user and user not in ("root", "0") and owner is None:
        log.warning(f"{cfg.image.reference} runs as user '{user}', but the credential files can only be handed to a "
                    "numeric USER (uid or uid:gid); they stay readable by root only.")
    target = _run_dir(cfg)
    with _parent_of(cfg, target) as parent:
        try:
            with ExitStack() as stack:
                directory = parent.fresh(target.name)
                stack.callback(directory.close)
                directory.write("oidc-token", step_token)
                names = ["oidc-token"]
                for name, config in credential_config.files(cfg, f"{INSIDE}/oidc-token").items():
                    names.append(name)
                    directory.write(name, _json(config))
                if owner:
                    for name in names:
                        _chown(directory, name, owner, user, cfg.image.reference)
            mounts = {str(target / name): {"bind": f"{INSIDE}/{name}", "mode": "ro"} for name in names}
            environment = credential_config.variables(cfg, INSIDE)
            if cfg.project_id:
                environment.update(GOOGLE_CLOUD_PROJECT=cfg.project_id, CLOUDSDK_CORE_PROJECT=cfg.project_id)
            yield mounts, environment
        finally:
            parent.remove(target.name)


def _chown(directory: _Dir, name: str, owner: tuple[int, int], user: str, image: str) -> None:
    try:
        os.chown(name, *owner, dir_fd=directory.fd, follow_symlinks=False)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.EPERM):
            raise
        raise PipeError(f"{image} runs as USER {user}, which the Docker daemon's user namespace does not map, so the "
                        f"credential files cannot be handed to it (chown: {error.strerror}): run the image as a uid the "
                        "daemon maps (such as 1000 or root), or leave GOOGLE_CREDENTIALS_IN_CONTAINER off.") from None
