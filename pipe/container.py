"""The step's Docker daemon: pull the private image and run it against the clone directory.

Only what Bitbucket's docker service allows: bind mounts under $BITBUCKET_CLONE_DIR (HostConfig.Binds,
never `mounts=`), no privileged mode. Credentials go to the daemon per pull and are never stored.
"""

import logging
import os
import re
import stat
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import docker
from docker import errors as docker_errors

from pipe import diagnose, redact
from pipe.errors import PipeError
from pipe.parsers import Image

log = logging.getLogger("pipe")

NEEDS_DOCKER = (
    "Cannot reach the step's Docker daemon{detail}: add `services: [docker]` to the step in "
    "bitbucket-pipelines.yml (locally, set DOCKER_HOST)."
)
# Bitbucket's own variables are useful to scripts; the two that are credentials are not forwarded.
_SECRET_CONTEXT = {"BITBUCKET_STEP_OIDC_TOKEN", "PIPELINES_JWT_TOKEN"}
OOM_EXIT = 137


def connect(timeout: int = 60) -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except docker_errors.DockerException as error:
        raise PipeError(NEEDS_DOCKER.format(detail=f" ({redact.redact(str(error))})")) from None
    return client


# Daemon answers that mean "try again": the registry or its token service had a transient fault.
_TRANSIENT = re.compile(
    r"\b(?:408|429|5\d\d)\b|Service Unavailable|Bad Gateway|Gateway Time-?out|Too Many Requests|"
    r"connection reset|connection refused|EOF|i/o timeout|TLS handshake timeout|timeout exceeded",
    re.IGNORECASE,
)


def pull(client: docker.DockerClient, image: Image, auth: dict, principal: str, policy) -> None:
    """Pull with per-pull credentials; transient registry faults are retried, the rest explained at once."""
    started = time.monotonic()
    for attempt in range(1, policy.attempts + 1):
        log.info(f"Pulling {image.reference}")
        try:
            _pull_once(client, image, auth)
            return
        except _PullFailed as failure:
            explanation = redact.redact(failure.explanation)
            pause = policy.delay(attempt, None)
            spent = time.monotonic() - started + pause > policy.budget
            if not _TRANSIENT.search(explanation) or attempt == policy.attempts or spent:
                raise PipeError(diagnose.registry_error(explanation, image.reference, principal)) from None
            log.warning(f"Pulling {image.reference} failed ({explanation}), retrying in {pause:.1f}s "
                        f"(attempt {attempt + 1} of {policy.attempts})")
            time.sleep(pause)


class _PullFailed(Exception):
    def __init__(self, explanation: str):
        super().__init__(explanation)
        self.explanation = explanation


def _pull_once(client: docker.DockerClient, image: Image, auth: dict) -> None:
    states: dict[str, str] = {}
    try:
        for event in client.api.pull(image.reference, stream=True, decode=True, auth_config=auth):
            if "error" in event:
                raise _PullFailed(str(event["error"]))
            status, layer = event.get("status", ""), event.get("id")
            if layer and states.get(layer) != status:  # one line per layer state change, not per byte
                states[layer] = status
                log.info(f"  {layer}: {status}")
            elif not layer and status:
                log.info(f"  {status}")
    except docker_errors.APIError as error:
        raise _PullFailed(str(error.explanation or error)) from None


def image_user(client: docker.DockerClient, image: Image) -> str:
    """The USER the image runs as ('' means root)."""
    return (client.images.get(image.reference).attrs.get("Config") or {}).get("User") or ""


def run_environment(user_env: dict[str, str], environ: dict) -> dict[str, str]:
    context = {
        name: value for name, value in environ.items()
        if (name.startswith("BITBUCKET_") or name == "CI") and name not in _SECRET_CONTEXT
    }
    return {**context, **user_env}


def _inside(path: Path, clone_dir: Path) -> bool:
    """After resolving symlinks and `..`, is the path the clone dir or below it?"""
    real, real_clone = path.resolve(), clone_dir.resolve()
    return real == real_clone or real_clone in real.parents


@contextmanager
def hidden(path: Path | None, clone_dir: Path):
    """A bind that lays an empty read-only directory over `path`, when it exists, so the run container cannot
    read files an earlier pipe exported into the clone it mounts. The empty directory lives in the clone
    (Bitbucket's docker service binds nothing else) and is removed afterwards."""
    if path is None or not _is_real_dir(path):
        yield {}
        return
    empty = tempfile.mkdtemp(prefix=".keyless-empty-", dir=clone_dir)
    try:
        os.chmod(empty, 0o555)
        yield {empty: {"bind": str(path), "mode": "ro"}}
    finally:
        os.rmdir(empty)


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def check_workdir(workdir: Path, clone_dir: Path) -> None:
    if not _inside(workdir, clone_dir):
        raise PipeError(
            f"The pipe runs in {workdir}, outside the clone directory {clone_dir}: Bitbucket's docker service only "
            "mounts $BITBUCKET_CLONE_DIR and its subdirectories, so `cd` back into the clone before the pipe."
        )


def check_binds(volumes: dict, clone_dir: Path) -> None:
    """Bitbucket's docker service refuses `-v` outside the clone dir with a terse authorization error; say why first."""
    for source in volumes:
        if not _inside(Path(source), clone_dir):
            raise PipeError(
                f"Cannot mount {source} into the container: Bitbucket's docker service only allows bind mounts of "
                "$BITBUCKET_CLONE_DIR and its subdirectories (`-v only supports $BITBUCKET_CLONE_DIR`); "
                "copy what the container needs into the clone directory instead."
            )


def run(
    client: docker.DockerClient,
    image: Image,
    *,
    script: str | None,
    command: list[str],
    environment: dict[str, str],
    workdir: Path,
    clone_dir: Path,
    mounts: dict | None = None,
    network: str | None = None,
    docker_host_internal: str | None = None,
    on_create=lambda container: None,
) -> int:
    """Run the image with the clone dir mounted at the same path; stream its output; return its exit code."""
    check_workdir(workdir, clone_dir)
    options = {}
    if script:
        options = {"entrypoint": ["/bin/sh", "-e", "-c"], "command": [script]}
    elif command:
        options = {"command": command}
    volumes = {str(clone_dir): {"bind": str(clone_dir), "mode": "rw"}, **(mounts or {})}
    check_binds(volumes, clone_dir)
    container = _create(client, image, network, docker_host_internal, working_dir=str(workdir), volumes=volumes,
                        environment=environment, labels={"pipe.google-cloud-keyless": "run"}, **options)
    on_create(container)
    try:
        stream = client.api.attach(container.id, stdout=True, stderr=True, stream=True, logs=True, demux=True)
        container.start()
        _copy_redacted(stream)
        status = container.wait()["StatusCode"]
        if status == OOM_EXIT:
            cause = "was OOM-killed" if _oom_killed(container) else "was killed (SIGKILL), usually for lack of memory"
            raise PipeError(
                f"The container {cause} (exit 137): containers count against the docker service's memory (1024 MB by "
                "default); raise it with `definitions: services: docker: memory: 3072` in bitbucket-pipelines.yml.",
                exit_code=OOM_EXIT,
            )
        return status
    finally:
        remove(container)


def _create(client: docker.DockerClient, image: Image, network: str | None, docker_host_internal: str | None, **options):
    """Only HostConfig.Binds (the docker service rejects `mounts=`, `privileged` and `security_opt`), and no host
    networking unless NETWORK asks for it: a docker service with user namespaces, like Bitbucket's, refuses it.
    Containers started in a step reach its services at host.docker.internal, as Bitbucket documents."""
    if network:
        options["network_mode"] = network
    if docker_host_internal and network not in ("host", "none"):
        options["extra_hosts"] = {"host.docker.internal": docker_host_internal}
    try:
        return client.containers.create(image.reference, **options)
    except docker_errors.APIError as error:
        raise PipeError(_refusal(str(error.explanation or error), network)) from None


def _refusal(explanation: str, network: str | None) -> str:
    explanation = redact.redact(explanation)
    # A user-namespaced daemon refuses host networking itself; an authorization plugin (asked first) may refuse it too.
    if "user namespaces are enabled" in explanation or (network == "host" and "authorization denied" in explanation):
        return (f"The docker service refused NETWORK: {network} ({explanation}): Bitbucket's docker service does not share "
                "its host's network; remove NETWORK and reach the step's services at host.docker.internal:<port>.")
    if network and re.search(r"network \S+ not found", explanation):
        return f"NETWORK is '{network}', but the docker service has no such network: create it first, or remove NETWORK."
    return f"The docker service refused to create the run container: {explanation}"


def _copy_redacted(stream) -> None:
    """The container's output as it streams, with every token the step knows (and its common encodings) redacted:
    a script could print the mounted step token, or a token an endpoint echoed."""
    outputs = ((sys.stdout, redact.StreamRedactor()), (sys.stderr, redact.StreamRedactor()))
    for chunks in stream:  # (stdout bytes | None, stderr bytes | None)
        for chunk, (target, redactor) in zip(chunks, outputs, strict=True):
            if chunk:
                target.buffer.write(redactor.feed(chunk))
                target.flush()
    for target, redactor in outputs:  # the tail held back in case it began a token
        target.buffer.write(redactor.close())
        target.flush()


def _oom_killed(container) -> bool:
    container.reload()
    return bool(container.attrs.get("State", {}).get("OOMKilled"))


def remove(container) -> None:
    try:
        container.remove(force=True)
    except docker_errors.NotFound:
        pass
    except docker_errors.APIError as error:
        log.warning(f"Could not remove container {container.short_id}: {error.explanation}")
