"""The step's Docker daemon: pull the private image and run it against the clone directory.

Only what Bitbucket's docker service allows: bind mounts under $BITBUCKET_CLONE_DIR (HostConfig.Binds,
never `mounts=`), no privileged mode. The daemon gets a pull-scoped registry token per pull (pipe.registry),
never the Google access token, and nothing is stored.
"""

import logging
import os
import re
import secrets
import sys
from contextlib import contextmanager
from pathlib import Path

import docker
from docker import errors as docker_errors

from pipe import bitbucket, clone_dirs, diagnose_registry, error_models, redact, retry, shown, stopping, untrusted
from pipe.errors import PipeError
from pipe.parsers import Image

log = logging.getLogger("pipe")

NEEDS_DOCKER = (
    "Cannot reach the step's Docker daemon{detail}: add `services: [docker]` to the step in "
    "bitbucket-pipelines.yml (locally, set DOCKER_HOST)."
)
OOM_EXIT = 137
# What a terminal keeps from output it was shown, and what undoes each: an escape sequence cut short (CAN), an open
# string such as a window title, hyperlink target or APC (ST), a hyperlink (OSC 8), a palette or default colours
# changed so text draws in the background's colour (OSC 104, 110, 111), the alternate screen (?1049l), a scroll region
# (DECSTBM, between DECSC and DECRC so the cursor stays where it was), autowrap off or the cursor hidden (?7h, ?25h), a
# character set switched to line drawing (ESC ( B and SI), and hidden, reversed or coloured text (SGR 0). Written
# after the run container's output when that output held any control sequence, so the pipe's ✔ and ✖ lines show.
TERMINAL_RESET = (b"\x18\x1b\\" b"\x1b]8;;\x1b\\" b"\x1b]104\x1b\\\x1b]110\x1b\\\x1b]111\x1b\\" b"\x1b[?1049l"
                  b"\x1b7\x1b[r\x1b8" b"\x1b[?7h\x1b[?25h" b"\x1b(B\x0f\x1b[0m")
# ESC and SO, and the 8-bit C1 introducers (raw, or the second byte of their UTF-8 form): DCS, SOS, CSI, OSC, PM, APC.
_STATEFUL = (b"\x1b", b"\x0e", b"\x90", b"\x98", b"\x9b", b"\x9d", b"\x9e", b"\x9f")


LABEL = "pipe.google-cloud-keyless"  # on every container the pipe runs, with the clone it mounts under LABEL + ".clone"


def connect(timeout: int = 60) -> docker.DockerClient:
    """The step's daemon, never through a proxy: the Engine API carries registry tokens and ENV's values, and on
    Bitbucket it is plain http to the docker service (a proxy variable set for the step's own traffic must not see it)."""
    try:
        # The SDK asks the daemon's API version as it is made: made with a version given, it asks nothing, so the
        # proxy variables (and .netrc) are off before the first request, then the version is asked as "auto" would.
        client = docker.from_env(timeout=timeout, version=docker.constants.MINIMUM_DOCKER_API_VERSION)
        client.api.trust_env = False
        client.api._version = client.api._retrieve_server_version()
        client.ping()
    except (docker_errors.DockerException, ValueError) as error:  # ValueError: a DOCKER_HOST the SDK cannot read
        raise PipeError(NEEDS_DOCKER.format(detail=f" ({redact.redact(untrusted.text(str(error), 300))})")) from None
    return client


def pull(client: docker.DockerClient, image: Image, auth, principal: str, policy: retry.RetryPolicy) -> None:
    """Pull with the registry token (pipe.registry.daemon_auth); transient failures are retried within the same
    budget as Google's calls, the rest explained at once. `auth` may be a function giving each try its own auth config,
    so a retry after the registry refused a token goes with a fresh one."""
    tries = retry.Attempts(policy, f"Pulling {image.display}")
    for attempt in tries:
        log.info(f"Pulling {image.display}")
        try:
            _pull_once(client, image, auth() if callable(auth) else auth)
            return
        except _PullFailed as failure:
            explanation = redact.redact(untrusted.text(failure.explanation))
            kind = error_models.from_registry(explanation, None, "the registry").transient  # the diagnosis's own reading
            if kind is None or not tries.again(attempt, f"failed ({explanation})", kind):
                raise PipeError(diagnose_registry.pull_error(explanation, image, principal, transient=kind)) from None


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
    """Bitbucket's documented variables, by name (pipe.bitbucket), then ENV's."""
    return {**bitbucket.forwarded(environ), **user_env}


def _inside(path: Path, clone_dir: Path) -> bool:
    """After resolving symlinks and `..`, is the path the clone dir or below it?"""
    real, real_clone = path.resolve(), clone_dir.resolve()
    return real == real_clone or real_clone in real.parents


@contextmanager
def hidden(path: Path | None, clone_dir: Path):
    """A bind that lays an empty read-only directory over `path`, when it exists, so the run container cannot read
    files an earlier pipe exported into the clone it mounts (pipe.clone_dirs.mask)."""
    if path is None or not os.path.isdir(path) or os.path.islink(path):
        yield {}
        return
    with clone_dirs.mask(clone_dir) as empty:
        yield {str(empty): {"bind": str(path), "mode": "ro"}}


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
    this_run = f"{LABEL}.run={secrets.token_hex(8)}"
    labels = {LABEL: "run", f"{LABEL}.clone": str(clone_dir), this_run.partition("=")[0]: this_run.partition("=")[2]}
    container = None
    try:
        with stopping.uninterrupted():  # a stop signal waits until the daemon has said which container it made
            container = _create(client, image, network, docker_host_internal, working_dir=str(workdir), volumes=volumes,
                                environment=environment, labels=labels, **options)
        stream = client.api.attach(container.id, stdout=True, stderr=True, stream=True, logs=True, demux=True)
        try:
            container.start()
        except docker_errors.APIError as error:  # the daemon checks the command, the user and the network only now
            raise PipeError(_refusal(str(error.explanation or error), network, "start")) from None
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
        if container is not None:
            remove(container)
        else:  # the create failed or was cut short after the daemon made it: find it by this run's label
            _remove_labelled(client, this_run, "left by a create that did not finish")


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
        raise PipeError(_refusal(str(error.explanation or error), network, "create")) from None


def _refusal(explanation: str, network: str | None, stage: str) -> str:
    """The daemon's refusal to create or start the run container, in one bounded line with what to change."""
    explanation = redact.redact(" ".join(untrusted.text(explanation, 300).split()))
    # A user-namespaced daemon refuses host networking itself; an authorization plugin (asked first) may refuse it too.
    if "user namespaces are enabled" in explanation or (network == "host" and "authorization denied" in explanation):
        return (f"The docker service refused NETWORK: {shown.clipped(network or '')} ({explanation}): Bitbucket's docker service "
                "does not share its host's network; remove NETWORK and reach the step's services at host.docker.internal:<port>.")
    if network and re.search(r"network \S+ not found", explanation):
        return f"NETWORK is {shown.echo(network)}, but the docker service has no such network: create it first, or remove NETWORK."
    if re.search(r"executable file not found|no such file or directory", explanation):
        return (f"The run container could not start its command ({explanation}): COMMAND's program (or the image's "
                "entrypoint, or /bin/sh for SCRIPT) is not in the image; fix COMMAND or the image.")
    if re.search(r"unable to find user|no users found|no matching entries in passwd", explanation):
        return (f"The run container could not start as the image's USER ({explanation}): that user does not exist in the "
                "image; fix USER in the image's Dockerfile, or use a numeric uid.")
    return f"The docker service refused to {stage} the run container: {explanation}"


class _Output:
    """One of the run container's streams on its way to the pipe's: redacted, and remembering what the terminal will
    need after it (a line break, a reset)."""

    def __init__(self, target):
        self.target, self.redactor = target, redact.StreamRedactor()
        self.stateful, self.last = False, b"\n"

    def write(self, data: bytes) -> None:
        if data:
            self.stateful = self.stateful or any(marker in data for marker in _STATEFUL)
            self.last = data[-1:]
            self.target.buffer.write(data)
            self.target.flush()

    def close(self) -> None:
        self.write(self.redactor.close())  # the tail held back in case it began a token
        self.target.buffer.write((TERMINAL_RESET if self.stateful else b"") + (b"" if self.last == b"\n" else b"\n"))
        self.target.flush()


def _copy_redacted(stream) -> None:
    """The container's output as it streams, with every token the step knows (and its common encodings) redacted:
    a script could print the mounted step token, or a token an endpoint echoed. Then the terminal is restored, also
    when the copy is cut short (a signal)."""
    outputs = (_Output(sys.stdout), _Output(sys.stderr))
    try:
        for chunks in stream:  # (stdout bytes | None, stderr bytes | None)
            for chunk, output in zip(chunks, outputs, strict=True):
                if chunk:
                    output.write(output.redactor.feed(chunk))
    finally:
        for output in outputs:
            output.close()


def _oom_killed(container) -> bool:
    container.reload()
    return bool(container.attrs.get("State", {}).get("OOMKilled"))


def remove_leftovers(client: docker.DockerClient, clone_dir: Path) -> None:
    """Containers an earlier run of the pipe on this clone started and could not remove (it was SIGKILLed): still
    running, they could read what this run exports into the clone they mount. One pipe runs at a time per clone."""
    _remove_labelled(client, f"{LABEL}.clone={clone_dir}", "left running by an earlier run of the pipe that was killed")


def _remove_labelled(client: docker.DockerClient, label: str, why: str) -> None:
    try:
        found = client.containers.list(all=True, filters={"label": label})
    except docker_errors.APIError as error:
        log.warning(f"Could not list the containers {why}: {error.explanation}")
        return
    for container in found:
        log.warning(f"Removing container {container.short_id}, {why}")
        remove(container)


def remove(container) -> None:
    """The container and its anonymous volumes (an image's VOLUME would otherwise keep what the run wrote there)."""
    with stopping.uninterrupted():
        try:
            container.remove(force=True, v=True)
        except docker_errors.NotFound:
            pass
        except docker_errors.APIError as error:
            log.warning(f"Could not remove container {container.short_id}: {error.explanation}")
