"""End-to-end reliability: faults injected at the emulator, SIGTERM mid-run, 20 pipes at once.

The suite prints its figures (faults survived, containers left) when it finishes."""

import time
from concurrent.futures import ThreadPoolExecutor

import docker
import pytest

from tests.conftest import APP_IMAGE
from tests.support.figures import record
from tests.support.pipe_runs import step_token, variables

pytestmark = pytest.mark.e2e

FIGURES = {"faults injected": 0, "faults survived": 0, "clean failures": 0, "containers left": 0}


@pytest.fixture(scope="module", autouse=True)
def figures():
    yield
    record("reliability", ", ".join(f"{k}: {v}" for k, v in FIGURES.items()))


def impersonating(world, **extra):
    return variables(world, SERVICE_ACCOUNT=world.labels["service_account"], **extra)


@pytest.mark.parametrize(
    "route, kind, count, extra",
    [
        ("sts", "503", 2, {}),
        ("sts", "reset", 2, {}),
        ("iam", "500", 1, {}),
        ("iam", "429", 1, {}),
        ("sts", "slow", 1, {"REQUEST_TIMEOUT": "2s"}),
        ("realm", "503", 1, {"IMAGE": APP_IMAGE}),
    ],
)
def test_transient_faults_within_the_budget_are_survived(live_stack, world, clone, route, kind, count, extra):
    live_stack.forget_image(APP_IMAGE)
    live_stack.emulator.faults.inject(route, kind, count=count, delay=5 if kind == "slow" else None,
                                      retry_after=1 if kind == "429" else None)
    FIGURES["faults injected"] += count
    run = live_stack.run_pipe(clone, impersonating(world, **extra), step_token(world))
    assert run.exit_code == 0, run.output
    assert "attempt 2 of 5" in run.stderr  # each retry says what failed and which attempt follows
    if kind == "slow":  # the slow answer is still being written when the pipe has moved on
        assert "timed out: no complete answer within 2s" in run.stderr
    else:
        assert len([r for r in live_stack.emulator.requests if r.fault]) == count
    FIGURES["faults survived"] += count


def test_faults_beyond_the_budget_fail_cleanly_with_googles_answer(live_stack, world, clone):
    live_stack.emulator.faults.inject("sts", "503", count=10)
    run = live_stack.run_pipe(clone, impersonating(world, RETRY_MAX_ATTEMPTS="3"), step_token(world))
    assert run.exit_code == 1
    assert "Google STS is unavailable (HTTP 503 UNAVAILABLE" in run.stdout and "rerun the step" in run.stdout
    assert len([r for r in live_stack.emulator.requests if r.route == "sts" and r.fault == "503"]) == 3
    assert "Traceback" not in run.output
    FIGURES["clean failures"] += 1


def test_a_client_error_is_not_retried(live_stack, world, clone):
    run = live_stack.run_pipe(clone, impersonating(world), step_token(world, aud="https://wrong.example"))
    assert run.exit_code == 1
    assert len([r for r in live_stack.emulator.requests if r.route == "sts"]) == 1
    assert "retrying" not in run.stderr


@pytest.mark.parametrize("signals", [1, 5], ids=["one SIGTERM", "a storm of SIGTERMs"])
def test_sigterm_stops_and_removes_the_run_container(live_stack, world, clone, signals):
    """A runner may send SIGTERM again while the pipe cleans up: later signals never cut the first one's cleanup short."""
    env_vars = impersonating(world, IMAGE=APP_IMAGE, SCRIPT="echo started; sleep 300")
    started = live_stack.start_pipe(clone, env_vars, step_token(world))
    [running] = live_stack.run_containers(clone)
    host = running.attrs["HostConfig"]
    assert not host["Privileged"] and not host.get("Mounts") and host["Binds"] == [f"{clone}:{clone}:rw"]
    exposed = " ".join(running.attrs["Config"]["Env"] + list(running.attrs["Config"]["Labels"].values()) + running.attrs["Args"])
    assert not [t for t in live_stack.emulator.issued_tokens() if t in exposed], "a token reached the run container's env, labels or args"
    assert "BITBUCKET_BRANCH=main" in exposed  # the step's context is forwarded, its credentials are not
    stopped_at = time.monotonic()
    for _ in range(signals):
        try:
            started.container.kill(signal="SIGTERM")  # back to back, while the first one's cleanup runs
        except docker.errors.APIError:  # the pipe already exited: its cleanup was done
            break
    run = started.join(timeout=30)
    elapsed = time.monotonic() - stopped_at
    assert run.exit_code == 128 + 15, run.output
    assert "Stopped by signal SIGTERM" in run.stdout
    assert elapsed < 10
    left = live_stack.run_containers(clone)
    FIGURES["containers left"] += len(left)
    assert left == []


def test_killed_container_is_reported_with_the_memory_fix(live_stack, world, clone):
    run = live_stack.run_pipe(clone, impersonating(world, IMAGE=APP_IMAGE, SCRIPT="sh -c 'kill -9 $$'\necho not-reached"), step_token(world))
    assert run.exit_code == 137
    assert "services: docker: memory: 3072" in run.stdout


def test_twenty_pipes_at_once(live_stack, world, tmp_path):
    clones = []
    for i in range(20):
        directory = tmp_path / f"clone-{i}"
        directory.mkdir()
        directory.chmod(0o777)
        clones.append(directory)
    with ThreadPoolExecutor(max_workers=20) as pool:
        runs = list(pool.map(lambda d: live_stack.run_pipe(d, impersonating(
            world, IMAGE=APP_IMAGE, SCRIPT=f"echo {d.name} > who.txt"), step_token(world)), clones))
    succeeded = sum(run.exit_code == 0 for run in runs)
    record("concurrency", f"{succeeded}/20 pipes run at once succeeded")
    assert succeeded == 20, [r.output for r in runs if r.exit_code]
    assert all((d / "who.txt").read_text().strip() == d.name for d in clones)
    left = live_stack.run_containers(tmp_path)
    FIGURES["containers left"] += len(left)
    assert left == []


# --- transient failures of the pull itself, injected between the real daemon and the real registry -------------------

@pytest.fixture
def faulty_registry(live_stack):
    from tests.support import stack
    from tests.support.faulty_registry import FaultyRegistry

    front = FaultyRegistry(stack.REGISTRY).start()
    yield front
    front.stop()


def _through(front, world, **extra):
    image = f"{front.address}/acme-ci/private/app:1"
    return image, impersonating(world, IMAGE=image, REGISTRIES=f"{front.address},127.0.0.1:8765", **extra)


@pytest.mark.parametrize("kind", ["503", "429", "502", "reset", "eof"])
def test_transient_pull_failures_are_retried_on_the_real_daemon(live_stack, world, clone, faulty_registry, kind):
    """The registry's 5xx, a throttle, a reset or an answer cut short: the daemon's pull fails, the pipe tries again."""
    image, env = _through(faulty_registry, world, SCRIPT="echo pulled-ok")
    live_stack.forget_image(image)
    faulty_registry.inject(r"/(manifests|blobs)/", kind, count=2)
    FIGURES["faults injected"] += 2
    run = live_stack.run_pipe(clone, env, step_token(world))
    assert run.exit_code == 0, run.output
    assert "pulled-ok" in run.stdout
    assert len([entry for entry in faulty_registry.log if entry[2] == kind]) == 2
    assert f"Pulling {image}: failed" in run.stderr and "retrying in" in run.stderr  # the pipe's own retry, said
    FIGURES["faults survived"] += 2


def test_a_pull_that_keeps_failing_is_explained_after_the_budget(live_stack, world, clone, faulty_registry):
    image, env = _through(faulty_registry, world, RETRY_MAX_ATTEMPTS="2")
    live_stack.forget_image(image)
    faulty_registry.inject(r"/manifests/", "503", count=1000)
    run = live_stack.run_pipe(clone, env, step_token(world))
    assert run.exit_code == 1
    [line] = [text for text in run.stdout.splitlines() if "✖" in text]
    assert f"Pulling {image} kept failing" in line and "RETRY_MAX_ATTEMPTS" in line and "add-iam-policy-binding" not in line
    assert run.stderr.count("retrying in") == 1  # two attempts: one retry
    assert "Traceback" not in run.output
    FIGURES["clean failures"] += 1
