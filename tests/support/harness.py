"""The live stack as tests and the demo use it: run the pipe the way Bitbucket does, push private images,
scan every output for leaked tokens."""

import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support import stack


@dataclass
class PipeRun:
    exit_code: int
    stdout: str
    stderr: str
    log: str = ""  # stdout and stderr interleaved, in the order the pipe wrote them (as the daemon logged them)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class BackgroundPipe:
    """A pipe run started by LiveStack.start_pipe: its thread, its own container, and its PipeRun once it ends."""

    thread: threading.Thread
    container: object
    outcome: dict

    def join(self, timeout: float) -> "PipeRun | None":
        self.thread.join(timeout=timeout)
        return self.outcome.get("run")


class Stack:
    """The running stack: docker client, registry, emulator, pipe image, and helpers around them."""

    def __init__(self, dc, host, emulator, pipe_image: str | None = None, busybox: str | None = None):
        self.dc, self.host, self.emulator = dc, host, emulator
        self.pipe_image = pipe_image or stack.pipe_image(dc)
        self.busybox = busybox or stack.busybox_image(dc)
        self.leak_scanned = 0
        self._per_thread = threading.local()

    def thread_client(self):
        """This thread's own Docker client. docker-py keys its unix-socket connection pools by URL and closes the least
        recently used one when a new URL needs a pool, even while another thread is using it (urllib3 then fails with
        `'NoneType' object has no attribute 'qsize'`): one client per thread never shares a pool."""
        import docker

        if threading.current_thread() is threading.main_thread():
            return self.dc
        if getattr(self._per_thread, "client", None) is None:
            self._per_thread.client = docker.DockerClient(base_url=self.host, timeout=300)
        return self._per_thread.client

    @property
    def world(self):
        return self.emulator.world

    def pipe_docker_env(self) -> tuple[dict, dict]:
        """DOCKER_HOST for the pipe container, and any socket mount it needs."""
        if self.host.startswith("unix://"):
            if stack.DOCKER_SOCKET.exists() and self.host == f"unix://{stack.DOCKER_SOCKET}":
                return {"DOCKER_HOST": stack.DOCKER_TCP}, {}
            socket = self.host[len("unix://"):]
            return {"DOCKER_HOST": self.host}, {socket: {"bind": socket, "mode": "rw"}}
        return {"DOCKER_HOST": self.host}, {}

    def bitbucket_run(self, clone: Path, variables: dict, token: str | None = None, workdir: Path | None = None) -> dict:
        """The container options Bitbucket uses for a pipe: same-path clone mount, -w, BITBUCKET_* defaults, CI=true."""
        docker_env, mounts = self.pipe_docker_env()
        env = {
            "CI": "true",
            "BITBUCKET_CLONE_DIR": str(clone),
            "BITBUCKET_BUILD_NUMBER": "7",
            "BITBUCKET_BRANCH": "main",
            "BITBUCKET_COMMIT": "0" * 40,
            "BITBUCKET_REPO_SLUG": "app",
            "BITBUCKET_WORKSPACE": self.world.labels.get("workspace_slug", "acme"),
            "BITBUCKET_REPO_UUID": self.world.labels.get("repository_uuid", "{}"),
            "BITBUCKET_PIPELINE_UUID": "{7d0e7e9e-0000-4000-8000-000000000001}",
            "BITBUCKET_STEP_UUID": "{7d0e7e9e-0000-4000-8000-000000000002}",
            **docker_env,
            **_flatten(variables),
        }
        if token is not None:
            env["BITBUCKET_STEP_OIDC_TOKEN"] = token
        return {
            "environment": env, "network_mode": "host", "working_dir": str(workdir or clone),
            "labels": {"org.bitbucket.pipelines.system": "true"},  # as Bitbucket labels its pipe containers
            "volumes": {str(clone): {"bind": str(clone), "mode": "rw"}, **mounts},
        }

    def run_pipe(self, clone: Path, variables: dict, token: str | None = None, workdir: Path | None = None,
                 timeout: int = 180) -> PipeRun:
        """Run the pipe as Bitbucket does, then scan everything it printed or wrote for leaked tokens."""
        container = self.thread_client().containers.run(self.pipe_image, detach=True,
                                                        **self.bitbucket_run(clone, variables, token, workdir))
        try:
            exit_code = container.wait(timeout=timeout)["StatusCode"]
            run = PipeRun(
                exit_code,
                container.logs(stdout=True, stderr=False).decode(errors="replace"),
                container.logs(stdout=False, stderr=True).decode(errors="replace"),
                container.logs(stdout=True, stderr=True).decode(errors="replace"),
            )
        finally:
            container.remove(force=True)
        self.assert_no_leak(run.output, clone)
        return run

    def assert_no_leak(self, output: str, clone: Path | None = None) -> None:
        """No token the emulator ever issued may appear in the output or in files outside the pipe's exports."""
        secrets = [s for s in self.emulator.issued_tokens() if len(s) > 16]
        texts = [("output", output)]
        if clone is not None:
            for path in clone.rglob("*"):
                if path.is_file() and not _is_private_export(path):
                    texts.append((str(path), path.read_text(errors="replace")))
        for where, text in texts:
            for secret in secrets:
                assert secret not in text, f"a token leaked into {where}"
        self.leak_scanned += 1

    def start_pipe(self, clone: Path, variables: dict, token: str | None = None, within: float = 60.0) -> "BackgroundPipe":
        """Run the pipe in a thread and return once its run container exists (a real condition, with a deadline), with
        the pipe's own container, as a runner would signal or kill it."""
        outcome: dict = {}
        thread = threading.Thread(target=lambda: outcome.update(run=self.run_pipe(clone, variables, token)))
        thread.start()
        deadline = time.monotonic() + within
        while not self.run_containers(clone):
            assert time.monotonic() < deadline, "the run container never started"
            time.sleep(0.2)
        [pipe] = [c for c in self.dc.containers.list(filters={"label": "org.bitbucket.pipelines.system=true"})
                  if f"{clone}:{clone}:rw" in c.attrs["HostConfig"]["Binds"]]
        return BackgroundPipe(thread, pipe, outcome)

    def run_containers(self, under: Path) -> list:
        """The pipe's run containers (any state) that mount a directory below `under`: one test's, no one else's."""
        containers = self.dc.containers.list(all=True, filters={"label": "pipe.google-cloud-keyless"})
        return [c for c in containers if any(b.startswith(f"{under}") for b in c.attrs["HostConfig"]["Binds"] or [])]

    def forget_image(self, reference: str) -> None:
        try:
            self.dc.images.remove(reference, force=True)
        except Exception:  # noqa: BLE001 - absent is what we want
            pass


class BitbucketStack(Stack):
    """The pipe on the Bitbucket-like docker service (tests/support/DOCKER_SERVICE.md), started as Bitbucket starts pipes there.

    Shares the plain stack's emulator (also listening over TLS on the bridge) and image store (served again over TLS
    on the bridge); the pipe image and busybox are copied over from the plain daemon."""

    def __init__(self, plain: Stack, service: stack.BitbucketService):
        import docker

        dc = docker.DockerClient(base_url=service.docker_host, timeout=300)
        super().__init__(dc, service.docker_host, plain.emulator,
                         pipe_image=stack.copy_image(plain.dc, dc, plain.pipe_image),
                         busybox=stack.copy_image(plain.dc, dc, plain.busybox))
        self.service = service
        self.emulator_url = plain.emulator.serve_tls(service.address, service.emulator_port, str(service.cert), str(service.key))

    def image(self, path: str) -> str:
        """An image of the shared store, by the name the TLS registry on the bridge serves it under."""
        return f"{self.service.registry}/{path}"

    def pipe_docker_env(self) -> tuple[dict, dict]:
        return {"DOCKER_HOST": self.service.pipe_docker_host, "BITBUCKET_DOCKER_HOST_INTERNAL": self.service.address}, {}

    def bitbucket_run(self, clone: Path, variables: dict, token: str | None = None, workdir: Path | None = None) -> dict:
        """As Bitbucket starts a pipe on its docker service: the default network, host.docker.internal → the docker host."""
        options = super().bitbucket_run(clone, variables, token, workdir)
        del options["network_mode"]  # a userns daemon refuses host networking
        options["extra_hosts"] = {"host.docker.internal": self.service.address}
        # The pipe trusts the test CA the way a step would trust a private one; the pipe image stays unchanged.
        options["environment"] = {"REQUESTS_CA_BUNDLE": str(self.trust_ca(clone)), **options["environment"]}
        return options

    def trust_ca(self, clone: Path) -> Path:
        """The test CA, copied into the clone (containers see only the clone)."""
        copy = clone / ".test-ca.pem"
        if not copy.exists():
            shutil.copy(self.service.ca, copy)
            copy.chmod(0o644)
        return copy


def start_bitbucket(plain: Stack) -> BitbucketStack:
    """Bring up the Bitbucket-like docker service next to the plain stack (stack.Unavailable if it cannot be)."""
    return BitbucketStack(plain, stack.bitbucket_service())


def _is_private_export(path: Path) -> bool:
    """The pipe's own 0600 credential exports are the one place tokens may be written."""
    return (path.stat().st_mode & 0o077) == 0 and "pipes" in path.parts


def _flatten(variables: dict) -> dict:
    env = {}
    for name, value in variables.items():
        if isinstance(value, list):
            env[f"{name}_COUNT"] = str(len(value))
            env.update({f"{name}_{i}": str(item) for i, item in enumerate(value)})
        else:
            env[name] = str(value)
    return env




def federated_token(emulator, world, repository_uuid: str | None = None) -> str:
    """A direct-federation access token, obtained the real way (google-auth against the emulator)."""
    from google.auth import identity_pool
    from google.auth.transport.requests import Request

    step_token = world.issuer().mint(repository_uuid or world.labels["repository_uuid"])

    class Supplier(identity_pool.SubjectTokenSupplier):
        def get_subject_token(self, context, request):
            return step_token

    credentials = identity_pool.Credentials(
        audience=world.labels["audience"], subject_token_type="urn:ietf:params:oauth:token-type:jwt",
        token_url=f"{emulator.url}/v1/token", subject_token_supplier=Supplier(),
        scopes=["https://www.googleapis.com/auth/cloud-platform"],
    )
    credentials.refresh(Request())
    return credentials.token


def push_image(live: "Stack", source: str, destination: str) -> None:
    """Push a local image into the private registry as the repository's writer (a principalSet grant)."""
    from tests.support.emulator import AR_WRITER, repository_resource

    world = live.world
    project, repository = destination.split("/")[1:3]
    member = world.providers[0].principal_set("repository_uuid", world.labels["repository_uuid"])
    world.grant_repository(repository_resource(project, world.registry_hosts[stack.REGISTRY], repository), AR_WRITER, member)
    token = federated_token(live.emulator, world)
    name, _, tag = destination.rpartition(":")
    live.dc.images.get(source).tag(name, tag)
    for event in live.dc.api.push(name, tag, stream=True, decode=True,
                                  auth_config={"username": "oauth2accesstoken", "password": token}):
        if "error" in event:
            raise RuntimeError(f"pushing {destination}: {event['error']}")
    live.forget_image(destination)


def start(world):
    """Bring up the stack, the emulator (on the registry's realm port) and the pipe image."""
    import docker

    from tests.support.emulator import Emulator, ensure_registry_signing_material

    host = stack.docker_host()
    dc = docker.DockerClient(base_url=host, timeout=300)
    stack.registry()
    key, _cert = ensure_registry_signing_material(stack.STACK_DIR / "registry")
    emulator = Emulator(world, port=stack.EMULATOR_PORT, registry_signing_key_path=key,
                        registry_issuer=stack.REGISTRY_ISSUER, registry_service=stack.REGISTRY)
    emulator.start()
    try:
        return Stack(dc, host, emulator)
    except BaseException:
        emulator.stop()
        raise
