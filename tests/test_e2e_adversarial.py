"""End-to-end attacks through the real image and daemon: a hostile script in the run container and a hostile image.

Each probe is counted in the figures (`adversarial: N probes tried, N safe`); every run is also scanned for
leaked tokens by the harness (output and clone files outside the pipe's private exports).
"""

import stat

import pytest

from tests.conftest import APP_IMAGE
from tests.support.figures import probe
from tests.support.leaks import leaks
from tests.test_e2e import step_token, variables

pytestmark = pytest.mark.e2e

STORAGE = ".bitbucket/pipelines/generated/pipeline/pipes/keyless-gcp/google-cloud-keyless"
# A script that looks for every credential the pipe could have left where the run container can see it.
SNOOP = (
    'found=$(find / -xdev \\( -name oidc-token -o -name access-token -o -name id-token -o -name credentials.json '
    '-o -path "*/docker/config.json" \\) 2>/dev/null | grep -v "^/proc" || true)\n'
    'echo "FOUND[$found]"\n'
    'for f in $found; do cat "$f" >/dev/null 2>&1 && echo "READ[$f]"; done\n'
    'env | grep -iE "token|credential" | sed "s/=.*//" | sed "s/^/ENV[/;s/$/]/" || true\n'
)


def exported(clone):
    return clone / STORAGE / "gcp"


def test_the_run_container_never_sees_this_runs_export(live_stack, world, clone):
    with probe("run container reads the same run's export"):
        run = live_stack.run_pipe(clone, variables(
            world, SERVICE_ACCOUNT=world.labels["service_account"], IMAGE=APP_IMAGE, EXPORT_CREDENTIALS="true", SCRIPT=SNOOP,
            BITBUCKET_PIPE_STORAGE_DIR=str(clone / STORAGE),
        ), step_token(world))
        assert run.exit_code == 0, run.output
        assert "FOUND[]" in run.stdout and "READ[" not in run.stdout and "ENV[" not in run.stdout, run.stdout
        files = [p for p in exported(clone).rglob("*") if p.is_file()]
        assert {p.name for p in files} >= {"oidc-token", "access-token", "config.json", "env"}  # written, after the run
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)


def test_the_run_container_never_sees_an_earlier_export(live_stack, world, clone):
    with probe("run container reads an earlier pipe's export"):
        first = live_stack.run_pipe(clone, variables(
            world, SERVICE_ACCOUNT=world.labels["service_account"], EXPORT_CREDENTIALS="true",
            BITBUCKET_PIPE_STORAGE_DIR=str(clone / STORAGE),
        ), step_token(world))
        assert first.exit_code == 0, first.output
        before = {p: p.read_bytes() for p in exported(clone).rglob("*") if p.is_file()}
        second = live_stack.run_pipe(clone, variables(
            world, SERVICE_ACCOUNT=world.labels["service_account"], IMAGE=APP_IMAGE, BITBUCKET_PIPE_STORAGE_DIR=str(clone / STORAGE),
            SCRIPT=f'{SNOOP}ls -A "{exported(clone)}" | wc -l | sed "s/^/ENTRIES[/;s/$/]/"\n'
                   f'rm -rf "{exported(clone)}"/* 2>/dev/null; true',
        ), step_token(world))
        assert second.exit_code == 0, second.output
        assert "FOUND[]" in second.stdout and "ENTRIES[0]" in second.stdout, second.stdout
        assert {p: p.read_bytes() for p in exported(clone).rglob("*") if p.is_file()} == before  # read-only, untouched
        assert not list(clone.glob(".keyless-empty-*")), "the empty directory used as a mask is removed"


def test_tokens_printed_by_the_script_are_redacted(live_stack, world, clone):
    with probe("script prints the mounted step token, raw, split and base64"):
        script = (
            "t=$(cat /var/run/google-cloud/oidc-token)\n"
            'echo "raw:$t"\n'
            'printf "%s" "$t" | base64 | sed "s/^/b64:/"\n'  # wrapped at 76 columns
            'printf "%s" "$t" | fold -w 50 | sed "s/^/split:/"\n'
        )
        token = step_token(world)
        run = live_stack.run_pipe(clone, variables(
            world, SERVICE_ACCOUNT=world.labels["service_account"], IMAGE=APP_IMAGE, GOOGLE_CREDENTIALS_IN_CONTAINER="true",
            SCRIPT=script,
        ), token)  # run_pipe's leak scan fails the test if any issued token appears in the output
        assert run.exit_code == 0, run.output
        assert "raw:[redacted]" in run.stdout
        for prefix in ("b64:", "split:"):  # wrapped: a public JWT header and a piece under 16 characters may show
            printed = "".join(line.removeprefix(prefix) + "\n" for line in run.stdout.splitlines() if line.startswith(prefix))
            assert "[redacted]" in printed and not leaks(printed, token), printed


def test_under_user_namespaces_the_run_container_never_sees_exports(bitbucket_stack, bitbucket_world, bitbucket_clone):
    """On a Bitbucket-like service the pipe and the run container share one remapped root, so 0600 protects nothing:
    only what the container mounts does. An earlier export and this run's export both stay out of its view."""
    from tests.test_e2e_bitbucket import APP
    from tests.test_e2e_bitbucket import variables as bitbucket_variables

    storage = str(bitbucket_clone / STORAGE)
    with probe("run container reads exports, user-namespaced docker service"):
        first = bitbucket_stack.run_pipe(bitbucket_clone, bitbucket_variables(
            bitbucket_stack, bitbucket_world, EXPORT_CREDENTIALS="true", BITBUCKET_PIPE_STORAGE_DIR=storage,
        ), step_token(bitbucket_world))
        assert first.exit_code == 0, first.log
        second = bitbucket_stack.run_pipe(bitbucket_clone, bitbucket_variables(
            bitbucket_stack, bitbucket_world, IMAGE=bitbucket_stack.image(APP), EXPORT_CREDENTIALS="true",
            BITBUCKET_PIPE_STORAGE_DIR=storage,
            SCRIPT=f'{SNOOP}ls -A "{exported(bitbucket_clone)}" | wc -l | sed "s/^/ENTRIES[/;s/$/]/"',
        ), step_token(bitbucket_world))
        assert second.exit_code == 0, second.log
        assert "FOUND[]" in second.stdout and "ENTRIES[0]" in second.stdout, second.stdout
        assert (exported(bitbucket_clone) / "access-token").is_file()  # this run's export, written after the run
