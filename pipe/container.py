"""The step's Docker daemon: pull the private image and run it against the clone directory.

Only what Bitbucket's docker service allows: bind mounts under $BITBUCKET_CLONE_DIR (HostConfig.Binds,
never `mounts=`), no privileged mode. Credentials go to the daemon per pull and are never stored.
"""

import logging
import sys
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


def pull(client: docker.DockerClient, image: Image, auth: dict, principal: str) -> None:
    log.info(f"Pulling {image.reference}")
    states: dict[str, str] = {}
    try:
        for event in client.api.pull(image.reference, stream=True, decode=True, auth_config=auth):
            if "error" in event:
                raise PipeError(diagnose.registry_error(str(event["error"]), image.reference, principal))
            status, layer = event.get("status", ""), event.get("id")
            if layer and states.get(layer) != status:  # one line per layer state change, not per byte
                states[layer] = status
                log.info(f"  {layer}: {status}")
            elif not layer and status:
                log.info(f"  {status}")
    except docker_errors.APIError as error:
        explanation = str(error.explanation or error)
        raise PipeError(diagnose.registry_error(redact.redact(explanation), image.reference, principal)) from None


def run_environment(user_env: dict[str, str], environ: dict) -> dict[str, str]:
    context = {
        name: value for name, value in environ.items()
        if (name.startswith("BITBUCKET_") or name == "CI") and name not in _SECRET_CONTEXT
    }
    return {**context, **user_env}


def check_workdir(workdir: Path, clone_dir: Path) -> None:
    real_workdir, real_clone = workdir.resolve(), clone_dir.resolve()
    if real_workdir != real_clone and real_clone not in real_workdir.parents:
        raise PipeError(
            f"The pipe runs in {workdir}, outside the clone directory {clone_dir}: Bitbucket's docker service only "
            "mounts $BITBUCKET_CLONE_DIR and its subdirectories, so `cd` back into the clone before the pipe."
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
    on_create=lambda container: None,
) -> int:
    """Run the image with the clone dir mounted at the same path; stream its output; return its exit code."""
    check_workdir(workdir, clone_dir)
    options = {}
    if script:
        options = {"entrypoint": ["/bin/sh", "-e", "-c"], "command": [script]}
    elif command:
        options = {"command": command}
    container = client.containers.create(
        image.reference,
        working_dir=str(workdir),
        volumes={str(clone_dir): {"bind": str(clone_dir), "mode": "rw"}},
        environment=environment,
        network_mode="host",  # the step's services answer on localhost, as in the step itself
        labels={"pipe.google-cloud-keyless": "run"},
        **options,
    )
    on_create(container)
    try:
        stream = client.api.attach(container.id, stdout=True, stderr=True, stream=True, logs=True, demux=True)
        container.start()
        for out, err in stream:
            if out:
                sys.stdout.buffer.write(out)
                sys.stdout.flush()
            if err:
                sys.stderr.buffer.write(err)
                sys.stderr.flush()
        status = container.wait()["StatusCode"]
        if status == OOM_EXIT and container.attrs and _oom_killed(container):
            raise PipeError(
                "The container ran out of memory (exit 137, OOM-killed): raise the docker service's limit with "
                "`definitions: services: docker: memory: 3072` (MB) in bitbucket-pipelines.yml.",
                exit_code=OOM_EXIT,
            )
        return status
    finally:
        remove(container)


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
