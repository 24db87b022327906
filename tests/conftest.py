"""Fixtures for the end-to-end tests: the local stack, the Google emulator and a Bitbucket-style pipe runner."""

import os

import pytest

from tests import harness
from tests.figures import ADVERSARIAL_SAFE, ADVERSARIAL_TRIED, FIGURES, record

APP_IMAGE = "127.0.0.1:5000/acme-ci/private/app:1"
OTHER_IMAGE = "127.0.0.1:5000/acme-ci/secret/tool:1"  # a repository nobody is granted


@pytest.fixture(scope="session")
def live_stack():
    from tests.emulator import typical_world

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
    if ADVERSARIAL_TRIED:
        record("adversarial", f"{len(ADVERSARIAL_TRIED)} probes tried, {len(ADVERSARIAL_SAFE)} safe")
    if FIGURES:
        terminalreporter.section("figures")
        for name, text in FIGURES.items():
            terminalreporter.write_line(f"{name}: {text}")


@pytest.fixture
def world(live_stack):
    """A fresh typical world for each test (tokens issued under earlier worlds stay known for leak scans)."""
    from tests.emulator import typical_world

    live_stack.emulator.wait_idle()  # an earlier test's slow fault must not land in this test's log
    live_stack.emulator.world = typical_world()
    live_stack.emulator.faults.clear()
    live_stack.emulator.reset_log()
    return live_stack.emulator.world


@pytest.fixture
def clone(tmp_path):
    """A clone directory the daemon can bind-mount (tmp_path lives on the same host)."""
    directory = tmp_path / "build"
    directory.mkdir()
    os.chmod(directory, 0o777)
    return directory
