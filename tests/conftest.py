"""Fixtures for the end-to-end tests: the local stack, the Google emulator and a Bitbucket-style pipe runner.

Each test names its daemon through the fixtures it uses: `live_stack`/`world`/`clone` run the pipe on the plain
daemon, `bitbucket_stack`/`bitbucket_world`/`bitbucket_clone` on the Bitbucket-like one (tests/support/DOCKER_SERVICE.md)."""

import os
import re
import shutil
import time

import pytest

from tests.support import google_tools, harness, stack
from tests.support.figures import ADVERSARIAL_SAFE, ADVERSARIAL_TRIED, FIGURES, record

APP_IMAGE = "127.0.0.1:5000/acme-ci/private/app:1"
OTHER_IMAGE = "127.0.0.1:5000/acme-ci/secret/tool:1"  # a repository nobody is granted


@pytest.fixture(scope="session")
def secrets_at_import():
    """The secrets test modules register when imported (all are imported before the first test runs)."""
    from pipe import redact

    return frozenset(redact._secrets)


@pytest.fixture(autouse=True)
def known_secrets(secrets_at_import):
    """Each test starts with the secrets its module registered when imported, and those it registers itself:
    redaction's set is process-wide, and a secret an earlier test or a module- or session-scoped fixture registered
    (any 16 of its characters are redacted) must not change what a later test sees."""
    from pipe import redact

    saved = set(redact._secrets)
    redact._secrets.intersection_update(secrets_at_import)
    redact._compiled = None
    yield
    redact._secrets.clear()
    redact._secrets.update(saved)
    redact._compiled = None


@pytest.fixture(scope="session")
def emulator():
    """The one in-process emulator of Google's endpoints for tests that need no Docker (the e2e stack runs its own
    on the registry realm's port)."""
    from tests.support.emulator import Emulator, World

    with Emulator(World()) as server:
        yield server


@pytest.fixture
def emu(emulator):
    """The in-process emulator with a fresh typical world: real time, no faults, a clean request log."""
    from tests.support.emulator import typical_world

    emulator.wait_idle()  # an earlier test's slow fault must not land in this test's log
    emulator.world = typical_world()
    emulator.clock = time.time
    emulator.faults.clear()
    emulator.reset_log()
    yield emulator
    emulator.faults.clear()


@pytest.fixture(scope="session")
def live_stack():
    from tests.support.emulator import typical_world

    live = harness.start(typical_world())
    try:
        harness.push_image(live, live.busybox, APP_IMAGE)
        harness.push_image(live, live.busybox, OTHER_IMAGE)
        yield live
        record("leak scan", f"{live.leak_scanned} pipe runs scanned (output and clone files) for "
                            f"{len(live.emulator.issued_tokens())} issued tokens; tokens leaked: 0")
    finally:
        live.emulator.stop()


def pytest_terminal_summary(terminalreporter):
    google_tools.report_missing()  # one loud line when gcloud, node or terraform is absent: skipped tests never look passed
    if ADVERSARIAL_TRIED:
        record("adversarial", f"{len(ADVERSARIAL_TRIED)} probes tried, {len(ADVERSARIAL_SAFE)} safe")
    if FIGURES:
        terminalreporter.section("figures")
        for name, text in FIGURES.items():
            terminalreporter.write_line(f"{name}: {text}")


@pytest.fixture
def world(live_stack):
    """A fresh typical world for each test (tokens issued under earlier worlds stay known for leak scans)."""
    from tests.support.emulator import typical_world

    live_stack.emulator.wait_idle()  # an earlier test's slow fault must not land in this test's log
    live_stack.emulator.world = typical_world()
    live_stack.emulator.faults.clear()
    live_stack.emulator.reset_log()
    return live_stack.emulator.world


@pytest.fixture
def clone(tmp_path):
    """A clone directory the daemon can bind-mount (tmp_path lives on the same host; on Bitbucket's docker service,
    bitbucket-pipelines.yml puts pytest's --basetemp inside the step's clone dir, which the service shares)."""
    directory = tmp_path / "build"
    directory.mkdir()
    os.chmod(directory, 0o777)
    return directory


@pytest.fixture(scope="session")
def bitbucket_stack(live_stack):
    """The Bitbucket-like docker service. Where a DOCKER_HOST is given (Bitbucket's own CI) and it cannot be started,
    its tests are skipped, loudly, in the figures; on a machine of our own it must start."""
    try:
        bitbucket = harness.start_bitbucket(live_stack)
    except Exception as error:  # noqa: BLE001 - any reason it cannot run there is the reason reported
        if not stack.given_docker_host():
            raise
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        record("Bitbucket-like daemon", f"NOT STARTED, ITS TESTS WERE SKIPPED: {reason}")
        pytest.skip(f"the Bitbucket-like daemon cannot be started here: {reason}")
    service = bitbucket.service
    record("Bitbucket-like daemon", f"dockerd {bitbucket.dc.version()['Version']}, user namespaces (root = host uid "
                                    f"{service.remap[0]}), authorization plugin {stack.AUTHZ_PLUGIN}, bridge {service.address}")
    yield bitbucket
    record("leak scan (Bitbucket-like daemon)", f"{bitbucket.leak_scanned} pipe runs scanned; tokens leaked: 0")


@pytest.fixture
def bitbucket_world(bitbucket_stack, world):
    """The typical world, with the bridge's TLS registry as a second name for the same Artifact Registry location."""
    world.registry_hosts[bitbucket_stack.service.registry] = world.registry_hosts[stack.REGISTRY]
    return world


@pytest.fixture
def bitbucket_clone(bitbucket_stack, request):
    """A clone dir below the authorization plugin's clone root, writable by the containers' remapped root."""
    directory = bitbucket_stack.service.new_clone(re.sub(r"[^\w.-]", "_", request.node.name))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)
