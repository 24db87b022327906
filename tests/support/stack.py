"""The local stack the end-to-end tests, `make demo` and `make bench` run against.

Real parts wherever a real part exists: a Docker daemon (Debian's docker.io), a CNCF registry
(Debian's docker-registry 2.8) using token auth against the Google emulator's Artifact Registry
realm, and base images built with debootstrap (Docker Hub is unreachable here). Everything is
reused when already running or cached, so only the first run pays for it.

Given a DOCKER_HOST (Bitbucket's `services: [docker]`), the suite uses that daemon and takes its base
images from Docker Hub instead.

A second, Bitbucket-like docker service (bitbucket_service(), tests/support/DOCKER_SERVICE.md) runs next to the
plain daemon: user-namespace remapping, the `pipelines` authorization plugin, a bridge network, and a TLS
registry and emulator listener on the bridge address.

    python -m tests.support.stack up [bitbucket]   # bring everything up and print the DOCKER_HOST to use
"""

import datetime
import http.client
import ipaddress
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parents[2]
STACK_DIR = Path(os.environ.get("PIPE_STACK_DIR", "/srv/pipe-stack"))
DOCKER_SOCKET = STACK_DIR / "docker" / "docker.sock"
DOCKER_TCP = "tcp://127.0.0.1:2375"
REGISTRY = "127.0.0.1:5000"
EMULATOR_PORT = 8765
REALM = f"http://127.0.0.1:{EMULATOR_PORT}/v2/token"
REGISTRY_ISSUER = "emulated-artifact-registry"
BASE_IMAGE = "local/bookworm-python:3.11"
BUSYBOX_IMAGE = "local/busybox:1"
HUB_BUSYBOX_IMAGE = "busybox:1.36.1"
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


# A dockerd killed without shutting down (a machine restart, a CI job's end) leaves one network sandbox
# per container it ever ran; the next start removes them one by one (~0.15 s each), so after a full
# suite it can take minutes before it answers. It is waited for as long as it is alive, within this bound.
DOCKERD_START_TIMEOUT = 900.0


def _start(command: list[str], log: Path, check, what: str, timeout: float = 60.0) -> None:
    """Start a background service and wait for it; if it exits first, say why from its log."""
    with open(log, "ab") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=handle, stdin=subprocess.DEVNULL, start_new_session=True)
    _say(f"starting {what}")
    _wait_until(lambda: check() or process.poll() is not None, what, timeout)
    if not check():
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"{what} exited with code {process.returncode}: {' / '.join(tail)}")


# --- Docker daemon ------------------------------------------------------------------------------

def _answers(host: str):
    try:
        client = docker.DockerClient(base_url=host, timeout=5)
        client.ping()
        return client
    except Exception:
        return None


def given_docker_host() -> str | None:
    """A DOCKER_HOST that is not our own daemon: Bitbucket's docker service (or a developer's), with Docker Hub."""
    given = os.environ.get("DOCKER_HOST")
    return given if given and given not in (f"unix://{DOCKER_SOCKET}", DOCKER_TCP) else None


def docker_host() -> str:
    """DOCKER_HOST if it answers, else our own dockerd (started if needed)."""
    given = os.environ.get("DOCKER_HOST")
    if given and _answers(given):
        return given
    if given_docker_host():
        raise RuntimeError(f"DOCKER_HOST={given} does not answer: start that daemon, or unset DOCKER_HOST to use the suite's own")
    ours = f"unix://{DOCKER_SOCKET}"
    if _answers(ours):
        return ours
    if not shutil.which("dockerd"):
        raise RuntimeError("dockerd is not installed: run `make deps` (it installs Debian's docker.io)")
    root = DOCKER_SOCKET.parent
    root.mkdir(parents=True, exist_ok=True)
    _start(["dockerd", "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
            "--pidfile", str(root / "docker.pid"), "-H", ours, "-H", DOCKER_TCP,
            "--bridge=none", "--iptables=false", "--ip6tables=false"],
           root / "dockerd.log", lambda: _answers(ours), "dockerd", DOCKERD_START_TIMEOUT)
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


def _dockerfile_base() -> str:
    """The base the published image is built on (the Dockerfile's default BASE_IMAGE)."""
    return re.search(r"^ARG BASE_IMAGE=(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE).group(1)


def _pulled(dc: docker.DockerClient, reference: str) -> str:
    if not _has_image(dc, reference):
        _say(f"pulling {reference} from Docker Hub")
        dc.images.pull(reference)
    return reference


def base_image(dc: docker.DockerClient) -> str:
    """Debian 12 with python3, python3-venv and the host's CA certificates (for the package index proxy).

    On a given DOCKER_HOST: the Dockerfile's own base, from Docker Hub."""
    if given_docker_host():
        return _pulled(dc, _dockerfile_base())
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
    """A tiny image with a shell, used as the users' private image (Docker Hub's busybox on a given DOCKER_HOST)."""
    if given_docker_host():
        return _pulled(dc, HUB_BUSYBOX_IMAGE)
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
    # Our own daemon has no bridge, so the build's RUN steps share the host's network; a docker service has NAT.
    network = {} if given_docker_host() else {"network_mode": "host"}
    dc.images.build(path=str(ROOT), tag=PIPE_IMAGE, buildargs={"BASE_IMAGE": base}, rm=True, **network)
    return PIPE_IMAGE


def copy_image(source: docker.DockerClient, target: docker.DockerClient, reference: str) -> str:
    """The same image (same ID) on another daemon, through `docker save | docker load`; skipped when already there."""
    wanted = source.images.get(reference).id
    try:
        if target.images.get(reference).id == wanted:
            return reference
    except docker.errors.ImageNotFound:
        pass
    _say(f"loading {reference} into {target.api.base_url}")
    target.images.load(source.images.get(reference).save(named=reference))
    return reference


# --- Registry --------------------------------------------------------------------------------------

def _registry_challenge(address: str = REGISTRY, tls: ssl.SSLContext | None = None) -> str | None:
    try:
        if tls:
            conn = http.client.HTTPSConnection(address, timeout=2, context=tls)
        else:
            conn = http.client.HTTPConnection(address, timeout=2)
        conn.request("GET", "/v2/")
        response = conn.getresponse()
        response.read()
        return response.getheader("Www-Authenticate")
    except OSError:  # ssl.SSLError included: something else answers there
        return None


def _registry_config(address: str, realm: str, cert: str, tls: str = "") -> str:
    """distribution 2.8 with token auth at the emulator's realm, over the one shared image store."""
    return (
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {STACK_DIR / 'registry' / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: {address}\n{tls}"
        f"auth:\n  token:\n    realm: {realm}\n    service: {address}\n"
        f"    issuer: {REGISTRY_ISSUER}\n    rootcertbundle: {cert}\n"
    )


def registry() -> str:
    """Debian's docker-registry 2.8 on 127.0.0.1:5000 with token auth at the emulator's realm."""
    from tests.support.emulator import ensure_registry_signing_material

    directory = STACK_DIR / "registry"
    _key, cert = ensure_registry_signing_material(directory)
    challenge = _registry_challenge()
    if challenge and REALM in challenge:
        return REGISTRY
    if challenge:
        raise RuntimeError(f"something else answers on {REGISTRY}: {challenge}")
    (directory / "config.yml").write_text(_registry_config(REGISTRY, REALM, cert))
    _start(["docker-registry", "serve", str(directory / "config.yml")], directory / "registry.log", _registry_challenge,
           "docker-registry")
    return REGISTRY


# --- The Bitbucket-like docker service (tests/support/DOCKER_SERVICE.md) ----------------------------------------

BB_DIR = STACK_DIR / "bitbucket"
BB_BRIDGE = "bbdocker0"
BB_ADDRESS = "10.39.202.1"  # the host on the bridge = $BITBUCKET_DOCKER_HOST_INTERNAL (Bitbucket's: 10.39.202.217)
BB_PREFIX = 24
BB_DOCKER_PORT = 2375
BB_REGISTRY = f"{BB_ADDRESS}:5443"
BB_EMULATOR_PORT = 8443
BB_CLONES = BB_DIR / "clones"  # the authorization plugin lets -v bind only below this
AUTHZ_PLUGIN = "keyless-suite-pipelines"  # not Bitbucket's `pipelines`: plugin names are machine-wide
AUTHZ_SOCKET = Path("/run/docker/plugins") / f"{AUTHZ_PLUGIN}.sock"
CERTS_D = Path("/etc/docker/certs.d")


class Unavailable(RuntimeError):
    """This machine cannot host the Bitbucket-like service (not root, no dockerd, no bridge allowed)."""


@dataclass(frozen=True)
class BitbucketService:
    docker_host: str  # the tests' own way in (unix socket)
    address: str  # the host's address on the bridge, where the daemon, registry and emulator listen
    registry: str
    emulator_port: int
    ca: Path  # the test CA: the daemon trusts it through certs.d, the pipe through REQUESTS_CA_BUNDLE
    cert: Path
    key: Path
    remap: tuple[int, int]  # the host uid and gid a container's root runs as

    pipe_docker_host = f"tcp://host.docker.internal:{BB_DOCKER_PORT}"  # as Bitbucket gives it to pipes

    def new_clone(self, name: str) -> Path:
        """A clone dir the containers' remapped root can write, as the step's clone is writable by pipes."""
        BB_CLONES.mkdir(parents=True, exist_ok=True)
        directory = Path(tempfile.mkdtemp(prefix=f"{name[:40]}-", dir=BB_CLONES))
        os.chown(directory, *self.remap)
        directory.chmod(0o755)
        return directory


def bitbucket_service() -> BitbucketService:
    """Start (or reuse) each piece of the Bitbucket-like docker service; Unavailable if this machine cannot host it."""
    if os.geteuid() != 0:
        raise Unavailable("it needs root (a bridge, a second dockerd, /etc/docker/certs.d)")
    for tool in ("dockerd", "docker-registry", "ip"):
        if not shutil.which(tool):
            raise Unavailable(f"{tool} is not installed: run `make deps`")
    _bridge()
    ca, cert, key = _tls_material(BB_DIR / "tls")
    trusted = CERTS_D / BB_REGISTRY / "ca.crt"  # per registry host:port, read by dockerd at each pull
    if not trusted.exists() or trusted.read_bytes() != ca.read_bytes():
        trusted.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ca, trusted)
    _authz_plugin()
    host = _bitbucket_dockerd()
    _tls_registry(ca, cert, key)
    return BitbucketService(host, BB_ADDRESS, BB_REGISTRY, BB_EMULATOR_PORT, ca, cert, key, _remapped_root())


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode:
        raise Unavailable(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")
    return done.stdout


def _bridge() -> None:
    """A bridge with the host's address on it: dockerd --bridge uses it as the default network, without NAT."""
    if subprocess.run(["ip", "link", "show", BB_BRIDGE], capture_output=True).returncode:
        _ip("link", "add", BB_BRIDGE, "type", "bridge")
    interfaces = json.loads(_ip("-j", "addr", "show", "dev", BB_BRIDGE))
    if not any(a.get("local") == BB_ADDRESS for i in interfaces for a in i.get("addr_info", [])):
        _ip("addr", "add", f"{BB_ADDRESS}/{BB_PREFIX}", "dev", BB_BRIDGE)
    _ip("link", "set", BB_BRIDGE, "up")


def _tls_material(directory: Path) -> tuple[Path, Path, Path]:
    """A test CA and one server certificate for the bridge address (registry and emulator), made once."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    from tests.support.emulator.keys import new_rsa_key, private_pem

    ca_path, cert_path, key_path = directory / "ca.pem", directory / "server.pem", directory / "server-key.pem"
    if ca_path.exists() and cert_path.exists() and key_path.exists():
        return ca_path, cert_path, key_path
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject: str, public_key, issuer: str, signer, extensions):
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(public_key).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=3650)))
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(signer, hashes.SHA256())

    ca_key, server_key = new_rsa_key(), new_rsa_key()
    ca = certificate("pipe test CA", ca_key.public_key(), "pipe test CA", ca_key,
                     [(x509.BasicConstraints(ca=True, path_length=0), True)])
    names = [x509.IPAddress(ipaddress.ip_address(BB_ADDRESS)), x509.DNSName("host.docker.internal")]
    server = certificate(BB_ADDRESS, server_key.public_key(), "pipe test CA", ca_key,
                         [(x509.BasicConstraints(ca=False, path_length=None), True), (x509.SubjectAlternativeName(names), False)])
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(private_pem(server_key))
    cert_path.write_bytes(server.public_bytes(Encoding.PEM))
    ca_path.write_bytes(ca.public_bytes(Encoding.PEM))  # the CA's key is not kept: nothing else is ever signed
    return ca_path, cert_path, key_path


def _plugin_answers() -> bool:
    conn = _UnixHTTPConnection(str(AUTHZ_SOCKET))
    try:
        conn.request("POST", "/Plugin.Activate", body=b"{}", headers={"Content-Type": "application/json"})
        return json.loads(conn.getresponse().read()).get("Implements") == ["authz"]
    except (OSError, ValueError):
        return False
    finally:
        conn.close()


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=2)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def _authz_plugin() -> None:
    if _plugin_answers():
        return
    BB_DIR.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(ROOT / "tests" / "support" / "authz_plugin.py"), "--socket", str(AUTHZ_SOCKET), "--allow", str(BB_CLONES)]
    _start(command, BB_DIR / "authz.log", _plugin_answers, f"the {AUTHZ_PLUGIN} authorization plugin")


def _bitbucket_dockerd() -> str:
    root = BB_DIR / "docker"
    ours = f"unix://{root / 'docker.sock'}"
    if not _answers(ours):
        root.mkdir(parents=True, exist_ok=True)
        (root / "daemon.json").write_text("{}\n")  # not /etc/docker/daemon.json: nothing shared with the plain daemon
        _start(["dockerd", "--config-file", str(root / "daemon.json"), "--data-root", str(root / "data"),
                "--exec-root", str(root / "exec"), "--pidfile", str(root / "docker.pid"),
                # Bitbucket's daemon images are "-tlsfalse-"; say so explicitly, or dockerd waits 15 s on a TCP address.
                "-H", ours, "-H", f"tcp://{BB_ADDRESS}:{BB_DOCKER_PORT}", "--tls=false",
                f"--bridge={BB_BRIDGE}", "--iptables=false", "--ip6tables=false",
                "--userns-remap=default", f"--authorization-plugin={AUTHZ_PLUGIN}"],
               root / "dockerd.log", lambda: _answers(ours), "the Bitbucket-like dockerd", DOCKERD_START_TIMEOUT)
    info = docker.DockerClient(base_url=ours, timeout=30).info()
    if "name=userns" not in info["SecurityOptions"] or AUTHZ_PLUGIN not in (info["Plugins"].get("Authorization") or []):
        raise RuntimeError(f"the daemon on {ours} runs without user namespaces or the {AUTHZ_PLUGIN} plugin: stop it "
                           f"(kill $(cat {root / 'docker.pid'})) and rerun")
    return ours


def _remapped_root() -> tuple[int, int]:
    """dockremap's first subordinate uid and gid (--userns-remap=default adds them on first start)."""
    def first(path: str) -> int:
        for line in Path(path).read_text().splitlines():
            name, start, _count = line.split(":")
            if name == "dockremap":
                return int(start)
        raise RuntimeError(f"{path} has no dockremap range, though the daemon runs with --userns-remap=default")
    return first("/etc/subuid"), first("/etc/subgid")


def _tls_registry(ca: Path, cert: Path, key: Path) -> None:
    """A second docker-registry on the same image store, over TLS on the bridge, its realm the emulator's TLS listener."""
    from tests.support.emulator import ensure_registry_signing_material

    trust = ssl.create_default_context(cafile=str(ca))
    realm = f"https://{BB_ADDRESS}:{BB_EMULATOR_PORT}/v2/token"
    challenge = _registry_challenge(BB_REGISTRY, trust)
    if challenge and realm in challenge:
        return
    if challenge:
        raise RuntimeError(f"something else answers on {BB_REGISTRY}: {challenge}")
    directory = BB_DIR / "registry"
    directory.mkdir(parents=True, exist_ok=True)
    _key, signing_cert = ensure_registry_signing_material(STACK_DIR / "registry")
    tls = f"  tls:\n    certificate: {cert}\n    key: {key}\n"
    (directory / "config.yml").write_text(_registry_config(BB_REGISTRY, realm, signing_cert, tls))
    _start(["docker-registry", "serve", str(directory / "config.yml")], directory / "registry.log",
           lambda: _registry_challenge(BB_REGISTRY, trust), "the TLS docker-registry on the bridge")


def another_registry(address: str, realm: str, directory: Path) -> subprocess.Popen:
    """One more docker-registry (shared image store) whose token service is `realm`: the caller stops it."""
    from tests.support.emulator import ensure_registry_signing_material

    _key, signing_cert = ensure_registry_signing_material(STACK_DIR / "registry")
    (directory / "config.yml").write_text(_registry_config(address, realm, signing_cert))
    with open(directory / "registry.log", "ab") as log:
        process = subprocess.Popen(["docker-registry", "serve", str(directory / "config.yml")], stdout=log, stderr=log,
                                   stdin=subprocess.DEVNULL)
    _wait_until(lambda: _registry_challenge(address) or process.poll() is not None, f"docker-registry on {address}")
    if process.poll() is not None:
        raise RuntimeError(f"docker-registry on {address} exited: {(directory / 'registry.log').read_text()[-300:]}")
    return process


def up(bitbucket: bool = False) -> dict:
    host = docker_host()
    dc = docker.DockerClient(base_url=host, timeout=300)
    registry()
    found = {"docker_host": host, "base": base_image(dc), "busybox": busybox_image(dc)}
    if bitbucket:
        service = bitbucket_service()
        found |= {"bitbucket_docker_host": service.docker_host, "bitbucket_docker_host_internal": service.address,
                  "bitbucket_registry": service.registry}
    return found


if __name__ == "__main__":
    if sys.argv[1:] not in (["up"], ["up", "bitbucket"]):
        sys.exit("usage: python -m tests.support.stack up [bitbucket]")
    for key, value in up(bitbucket=sys.argv[2:] == ["bitbucket"]).items():
        print(f"{key}={value}")
