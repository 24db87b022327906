"""The local stack the end-to-end tests, `make demo` and `make bench` run against.

Real parts wherever a real part exists: a Docker daemon (Debian's docker.io), a CNCF registry
(Debian's docker-registry 2.8) using token auth against the Google emulator's Artifact Registry
realm, and base images built with debootstrap (Docker Hub is unreachable here). Everything is
reused when already running or cached, so only the first run pays for it.

    python -m tests.stack up      # bring everything up and print the DOCKER_HOST to use
"""

import http.client
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
STACK_DIR = Path(os.environ.get("PIPE_STACK_DIR", "/srv/pipe-stack"))
DOCKER_SOCKET = STACK_DIR / "docker" / "docker.sock"
DOCKER_TCP = "tcp://127.0.0.1:2375"
REGISTRY = "127.0.0.1:5000"
EMULATOR_PORT = 8765
REALM = f"http://127.0.0.1:{EMULATOR_PORT}/v2/token"
REGISTRY_ISSUER = "emulated-artifact-registry"
BASE_IMAGE = "local/bookworm-python:3.11"
BUSYBOX_IMAGE = "local/busybox:1"
PIPE_IMAGE = "keyless-gcp/google-cloud-keyless:test"


def _say(message: str) -> None:
    print(f"[stack] {message}", file=sys.stderr, flush=True)


def _wait_until(check, what: str, timeout: float = 60.0):
    """Poll a readiness check (synchronisation on a real condition, with a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not become ready within {timeout:.0f}s")
        time.sleep(0.2)


# --- Docker daemon ------------------------------------------------------------------------------

def _answers(host: str):
    try:
        client = docker.DockerClient(base_url=host, timeout=5)
        client.ping()
        return client
    except Exception:
        return None


def docker_host() -> str:
    """DOCKER_HOST if it answers, else our own dockerd (started if needed)."""
    given = os.environ.get("DOCKER_HOST")
    if given and _answers(given):
        return given
    ours = f"unix://{DOCKER_SOCKET}"
    if _answers(ours):
        return ours
    if not shutil.which("dockerd"):
        raise RuntimeError("dockerd is not installed: run `make deps` (it installs Debian's docker.io)")
    root = DOCKER_SOCKET.parent
    root.mkdir(parents=True, exist_ok=True)
    _say("starting dockerd")
    log = open(root / "dockerd.log", "ab")
    subprocess.Popen(
        ["dockerd", "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
         "--pidfile", str(root / "docker.pid"), "-H", ours, "-H", DOCKER_TCP,
         "--bridge=none", "--iptables=false", "--ip6tables=false"],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    _wait_until(lambda: _answers(ours), "dockerd")
    return ours


def client() -> docker.DockerClient:
    return docker.DockerClient(base_url=docker_host(), timeout=300)


# --- Base images ---------------------------------------------------------------------------------

def _has_image(dc: docker.DockerClient, tag: str) -> bool:
    try:
        dc.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def _import_dir(dc: docker.DockerClient, directory: Path, tag: str) -> None:
    tarball = directory.with_suffix(".tar")
    with tarfile.open(tarball, "w") as tar:
        tar.add(directory, arcname=".")
    repository, _, version = tag.partition(":")
    dc.api.import_image_from_file(str(tarball), repository=repository, tag=version)
    tarball.unlink()


def base_image(dc: docker.DockerClient) -> str:
    """Debian 12 with python3, python3-venv and the host's CA certificates (for the package index proxy)."""
    if _has_image(dc, BASE_IMAGE):
        return BASE_IMAGE
    rootfs = STACK_DIR / "rootfs-bookworm"
    if not (rootfs / "usr/bin/python3").exists():
        _say("building the base image with debootstrap (about a minute)")
        shutil.rmtree(rootfs, ignore_errors=True)
        subprocess.run(
            ["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
             "bookworm", str(rootfs)], check=True, stdout=subprocess.DEVNULL,
        )
    extra_cas = Path("/usr/local/share/ca-certificates")
    if extra_cas.is_dir():
        shutil.copytree(extra_cas, rootfs / "usr/local/share/ca-certificates", dirs_exist_ok=True)
        subprocess.run(["chroot", str(rootfs), "update-ca-certificates"], check=True, stdout=subprocess.DEVNULL)
    _import_dir(dc, rootfs, BASE_IMAGE)
    return BASE_IMAGE


def busybox_image(dc: docker.DockerClient) -> str:
    """A tiny image with a shell, used as the users' private image."""
    if _has_image(dc, BUSYBOX_IMAGE):
        return BUSYBOX_IMAGE
    work = STACK_DIR / "busybox"
    shutil.rmtree(work, ignore_errors=True)
    (work / "img/bin").mkdir(parents=True)
    download = ["apt-get", "download", "busybox-static"]
    if subprocess.run(download, cwd=work, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)  # a fresh machine has no lists
        subprocess.run(download, cwd=work, check=True, stdout=subprocess.DEVNULL)
    deb = next(work.glob("busybox-static_*.deb"))
    subprocess.run(["dpkg", "-x", str(deb), str(work / "pkg")], check=True)
    busybox = work / "img/bin/busybox"
    shutil.copy(work / "pkg/bin/busybox", busybox)
    applets = subprocess.run([str(busybox), "--list"], check=True, capture_output=True, text=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (work / "img/bin" / applet).symlink_to("busybox")
    (work / "img/tmp").mkdir()
    _import_dir(dc, work / "img", BUSYBOX_IMAGE)
    return BUSYBOX_IMAGE


def pipe_image(dc: docker.DockerClient) -> str:
    """Build the pipe from the real Dockerfile, as a user of the Dockerfile would."""
    base = base_image(dc)
    _say(f"building {PIPE_IMAGE} from the Dockerfile (BASE_IMAGE={base})")
    dc.images.build(path=str(ROOT), tag=PIPE_IMAGE, buildargs={"BASE_IMAGE": base}, network_mode="host", rm=True)
    return PIPE_IMAGE


# --- Registry --------------------------------------------------------------------------------------

def _registry_challenge() -> str | None:
    try:
        conn = http.client.HTTPConnection(REGISTRY, timeout=2)
        conn.request("GET", "/v2/")
        response = conn.getresponse()
        response.read()
        return response.getheader("Www-Authenticate")
    except OSError:
        return None


def registry() -> str:
    """Debian's docker-registry 2.8 on 127.0.0.1:5000 with token auth at the emulator's realm."""
    from tests.emulator import ensure_registry_signing_material

    directory = STACK_DIR / "registry"
    _key, cert = ensure_registry_signing_material(directory)
    challenge = _registry_challenge()
    if challenge and REALM in challenge:
        return REGISTRY
    if challenge:
        raise RuntimeError(f"something else answers on {REGISTRY}: {challenge}")
    config = directory / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {directory / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: {REGISTRY}\n"
        f"auth:\n  token:\n    realm: {REALM}\n    service: {REGISTRY}\n"
        f"    issuer: {REGISTRY_ISSUER}\n    rootcertbundle: {cert}\n"
    )
    _say("starting docker-registry")
    log = open(directory / "registry.log", "ab")
    subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=log,
                     stdin=subprocess.DEVNULL, start_new_session=True)
    _wait_until(_registry_challenge, "docker-registry")
    return REGISTRY


def up() -> dict:
    host = docker_host()
    dc = docker.DockerClient(base_url=host, timeout=300)
    registry()
    return {"docker_host": host, "base": base_image(dc), "busybox": busybox_image(dc)}


if __name__ == "__main__":
    if sys.argv[1:] != ["up"]:
        sys.exit("usage: python -m tests.stack up")
    for key, value in up().items():
        print(f"{key}={value}")
