"""The entry point: signals unwind, the caller's umask comes back, a bug is one line."""

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipe import main, stopping
from tests.support.emulator import Issuer

ROOT = Path(__file__).resolve().parent.parent
PROVIDER = "projects/123456789012/locations/global/workloadIdentityPools/bitbucket/providers/acme"


@pytest.fixture
def silent_sts():
    """An STS that accepts the connection and never answers: the pipe waits there until it is stopped."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


@pytest.mark.parametrize("signum", stopping.SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_each_stop_signal_unwinds_in_one_line_with_its_exit_code(silent_sts, signum, tmp_path):
    env = {"PATH": os.environ["PATH"], "WORKLOAD_IDENTITY_PROVIDER": PROVIDER, "STS_ENDPOINT": silent_sts,
           "BITBUCKET_STEP_OIDC_TOKEN": Issuer("acme").mint("{0d6c1f43-6f39-4a35-9d1b-3b2f8c9e7a10}"), "REQUEST_TIMEOUT": "600s",
           "RETRY_MAX_TIME": "600s"}
    process = subprocess.Popen([sys.executable, "-m", "pipe"], cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Synchronise on the pipe's own progress: the signal comes once its STS call is under way (a connection open).
        deadline = time.monotonic() + 30
        while not _has_socket_to(process.pid, silent_sts.rsplit(":", 1)[1]):
            assert time.monotonic() < deadline and process.poll() is None, process.communicate()
            time.sleep(0.05)
        process.send_signal(signum)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 128 + signum, (out, err)
    assert f"Stopped by signal {signal.Signals(signum).name}; cleaned up." in out
    assert out.count("✖") == 1 and "Traceback" not in out + err


def _has_socket_to(pid: int, port: str) -> bool:
    """Whether the process holds a TCP connection to the given local port (its STS call is under way)."""
    hexport = f"{int(port):04X}"
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").glob("*"):
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2].endswith(f":{hexport}") and fields[9] in inodes:
            return True
    return False


def test_the_callers_umask_comes_back(monkeypatch):
    previous = os.umask(0o022)
    try:
        main.main({"WORKLOAD_IDENTITY_PROVIDER": "not a provider"})
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(previous)


def test_the_pipe_works_under_its_own_umask(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(main.config, "load", lambda env, cwd: seen.setdefault("umask", os.umask(0o077)) or (_ for _ in ()).throw(
        main.PipeError("stop here")))
    previous = os.umask(0o002)
    try:
        main.main({})
    finally:
        os.umask(previous)
    assert seen["umask"] == 0o077


def test_a_bug_is_one_line_with_its_type_and_no_traceback(monkeypatch, capsys):
    def broken(env, cwd):
        raise KeyError("a bug")

    monkeypatch.setattr(main.config, "load", broken)
    assert main.main({}) == 1
    out, err = capsys.readouterr()
    assert "✖ Unexpected error (KeyError)" in out and "Traceback" not in out + err and out.count("\n") == 1


def test_the_printed_shell_lines_hand_sh_the_export_path_as_one_word(monkeypatch, caplog, tmp_path):
    """`source …/env` and `rm -rf …` are meant to be copied into the step's script: sh must read the path whole,
    whatever the clone's path holds (spaces, `;`, `$(…)`)."""
    from types import SimpleNamespace

    from pipe import export

    directory = tmp_path / "odd dir; touch PWNED $(id) 'q'"
    monkeypatch.setattr(export, "export", lambda *args: directory)
    pipe = SimpleNamespace(success=lambda message: None)
    with caplog.at_level(logging.INFO, logger="pipe"):
        main.KeylessPipe._export(pipe, SimpleNamespace(export_credentials=True), SimpleNamespace(value="t"),
                                 SimpleNamespace(access_token="a"), None)
    source = re.search(r"with:  source (.*)$", caplog.text, re.M)[1]
    removal = re.search(r"`rm -rf (.*)` when done", caplog.text)[1]
    for words, expected in ((source, f"{directory}/env"), (removal, str(directory))):
        printed = subprocess.run(["sh", "-c", f"printf '%s\\n' {words}"], capture_output=True, text=True, check=True, cwd=tmp_path)
        assert printed.stdout == expected + "\n"
    assert not (tmp_path / "PWNED").exists()
