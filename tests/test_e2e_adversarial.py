"""End-to-end attacks through the real image and daemon: a hostile script in the run container and a hostile image.

Each probe is counted in the figures (`adversarial: N probes tried, N safe`); every run is also scanned for
leaked tokens by the harness (output and clone files outside the pipe's private exports).
"""

import stat

import pytest

from tests.conftest import APP_IMAGE
from tests.support.figures import probe
from tests.support.leaks import leaks
from tests.support.pipe_runs import APP, STORAGE, bitbucket_variables, exported, step_token, variables

pytestmark = pytest.mark.e2e

SNOOP = (
    'found=$(find / -xdev \\( -name oidc-token -o -name access-token -o -name id-token -o -name credentials.json '
    '-o -path "*/docker/config.json" \\) 2>/dev/null | grep -v "^/proc" || true)\n'
    'echo "FOUND[$found]"\n'
    'for f in $found; do cat "$f" >/dev/null 2>&1 && echo "READ[$f]"; done\n'
    'env | grep -iE "token|credential" | sed "s/=.*//" | sed "s/^/ENV[/;s/$/]/" || true\n'
)


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


def test_the_run_container_never_sees_another_pipe_references_export(live_stack, world, clone):
    """A fork or another version of the pipe in the same step has its own BITBUCKET_PIPE_STORAGE_DIR beside this one:
    its export is hidden from this run's container too."""
    other = clone / ".bitbucket/pipelines/generated/pipeline/pipes/myorg/keyless-fork"
    with probe("run container reads another pipe reference's export"):
        first = live_stack.run_pipe(clone, variables(
            world, SERVICE_ACCOUNT=world.labels["service_account"], EXPORT_CREDENTIALS="true", BITBUCKET_PIPE_STORAGE_DIR=str(other),
        ), step_token(world))
        assert first.exit_code == 0, first.output
        second = live_stack.run_pipe(clone, variables(
            world, SERVICE_ACCOUNT=world.labels["service_account"], IMAGE=APP_IMAGE, BITBUCKET_PIPE_STORAGE_DIR=str(clone / STORAGE),
            SCRIPT=f'{SNOOP}ls -A "{other / "gcp"}" | wc -l | sed "s/^/ENTRIES[/;s/$/]/"',
        ), step_token(world))
        assert second.exit_code == 0, second.output
        assert "FOUND[]" in second.stdout and "ENTRIES[0]" in second.stdout, second.stdout


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


# --- what a killed run leaves, and what the run container does to the pipe's own directories --------------------------

RUN_DIR = f"{STORAGE}/gcp-run"


def _with_credentials(world, clone, script, **extra):
    return {**variables(world, SERVICE_ACCOUNT=world.labels["service_account"], IMAGE=APP_IMAGE, GOOGLE_CREDENTIALS_IN_CONTAINER="true",
                        BITBUCKET_PIPE_STORAGE_DIR=str(clone / STORAGE), SCRIPT=script), **extra}


def test_what_a_killed_run_leaves_is_removed_before_anything_else(live_stack, world, clone):
    """SIGKILL cannot be caught: the step token stays in the clone (the run container's credential directory, a mask).
    The next run removes both before it does anything, and its run container never sees them."""
    with probe("pipe killed with SIGKILL mid-run, then run again"):
        first = live_stack.start_pipe(clone, _with_credentials(world, clone, "echo started; sleep 300"), step_token(world))
        first.container.kill(signal="SIGKILL")
        first.join(timeout=60)
        [orphan] = live_stack.run_containers(clone)  # the docker service stays for the rest of the step
        orphan.reload()
        assert orphan.status == "running", "the killed run left its container running: the premise of this probe"
        assert (clone / RUN_DIR / "oidc-token").is_file(), "the killed run left its credentials: the premise of this probe"
        (clone / ".keyless-empty-0123456789abcdef").mkdir()  # and a mask, as a killed run leaves one
        second = live_stack.run_pipe(clone, variables(
            world, SERVICE_ACCOUNT=world.labels["service_account"], IMAGE=APP_IMAGE, BITBUCKET_PIPE_STORAGE_DIR=str(clone / STORAGE),
            SCRIPT=SNOOP + f'echo "LISTED[$(ls -A "{clone / STORAGE}" | tr "\\n" " ")]"\n',
        ), step_token(world))
        assert second.exit_code == 0, second.output
        assert "FOUND[]" in second.stdout and "gcp-run" not in second.stdout.split("LISTED[")[1], second.stdout
        assert not (clone / RUN_DIR).exists() and not list(clone.glob(".keyless-empty-*"))
        assert f"Removing container {orphan.short_id}" in second.stderr, second.output
        assert live_stack.run_containers(clone) == []  # the orphan too, not only the second run's own container


def test_a_killed_runs_container_is_removed_before_a_later_export(live_stack, world, clone):
    """The orphan of a SIGKILLed run keeps the clone mounted: an export later in the step must not be readable by it.
    ACTION auth needs no daemon, but with EXPORT_CREDENTIALS and a daemon in the step it removes the orphan first."""
    stolen = clone / "stolen-token"
    thief = f'while true; do cp "{clone / STORAGE}/gcp/access-token" "{stolen}" 2>/dev/null || true; sleep 0.1; done'
    with probe("a killed run's container waits for the next export"):
        killed = live_stack.start_pipe(clone, _with_credentials(world, clone, thief), step_token(world))
        killed.container.kill(signal="SIGKILL")
        killed.join(timeout=60)
        assert live_stack.run_containers(clone), "the killed run left its container: the premise of this probe"
        export = live_stack.run_pipe(clone, variables(
            world, SERVICE_ACCOUNT=world.labels["service_account"], ACTION="auth", EXPORT_CREDENTIALS="true",
            BITBUCKET_PIPE_STORAGE_DIR=str(clone / STORAGE)), step_token(world))
        assert export.exit_code == 0, export.output
        assert (clone / STORAGE / "gcp" / "access-token").is_file()
        assert live_stack.run_containers(clone) == [] and not stolen.exists()  # removed before the export was written


def test_an_images_anonymous_volumes_go_with_its_container(live_stack, world, clone, tmp_path):
    """An image that declares VOLUME (as google/cloud-sdk does for its config) gets an anonymous volume per run: what
    the run writes there, the step token included, must not outlive the run on the daemon."""
    from tests.support.pipe_runs import build_image

    image = build_image(live_stack, tmp_path, 'VOLUME ["/root/.config"]', "with-volume")
    before = {v.id for v in live_stack.dc.volumes.list()}
    with probe("run container copies the step token into an anonymous volume"):
        run = live_stack.run_pipe(clone, _with_credentials(
            world, clone, "cp /var/run/google-cloud/oidc-token /root/.config/kept && echo copied", IMAGE=image), step_token(world))
        assert run.exit_code == 0 and "copied" in run.stdout, run.output
        assert {v.id for v in live_stack.dc.volumes.list()} - before == set()


def test_whatever_the_run_container_does_to_the_pipes_directories_is_cleaned_up(live_stack, world, clone):
    """The run container can write through the clone into the pipe's credential directory and mask, change their
    modes, plant links and deep trees: the run still succeeds, and nothing of it is left."""
    mischief = (
        f'run="{clone / RUN_DIR}"\n'
        'if touch "$run/planted" 2>/dev/null; then echo RUN-DIR-WRITABLE; fi\n'  # masked: the credentials show only read-only
        f'for m in {clone}/.keyless-empty-*; do\n'
        '  mkdir -p "$m/planted/a/b/c" && echo x > "$m/planted/a/b/c/file" && ln -s / "$m/planted/root-link"\n'
        '  d="$m/deep"; i=0; while [ $i -lt 300 ]; do mkdir "$d"; d="$d/d"; i=$((i+1)); done\n'
        '  chmod 000 "$m/planted/a"; chmod 500 "$m"\n'
        'done\n'
        'echo mischief-done\n'
    )
    with probe("run container fills and locks the pipe's own directories"):
        run = live_stack.run_pipe(clone, _with_credentials(world, clone, mischief, EXPORT_CREDENTIALS="true"), step_token(world))
        assert run.exit_code == 0, run.output
        assert "mischief-done" in run.stdout and "RUN-DIR-WRITABLE" not in run.stdout
        assert not (clone / RUN_DIR).exists() and not list(clone.glob(".keyless-empty-*"))
        assert (clone / STORAGE / "gcp" / "access-token").is_file()  # the export, written after, is whole


def test_the_pipes_last_line_stays_visible_after_the_run_containers_output(live_stack, world, clone):
    """Output that hides text, opens a hyperlink or switches to the line-drawing set, with no final newline: the pipe
    resets the terminal before its own ✔ line."""
    from pipe.container import TERMINAL_RESET

    script = "printf '\\033[8mhidden \\033]8;;https://evil.example\\033\\\\link \\016line drawing \\033]0;title'"
    with probe("run container output leaves the terminal hidden, linked, in another character set"):
        run = live_stack.run_pipe(clone, variables(world, SERVICE_ACCOUNT=world.labels["service_account"], IMAGE=APP_IMAGE,
                                                   SCRIPT=script), step_token(world))
        assert run.exit_code == 0, run.output
        output, success = run.stdout.rsplit("✔ The script", 1)
        assert output.rstrip("\x1b[32m").endswith(TERMINAL_RESET.decode() + "\n"), repr(output[-80:])


def test_only_bitbucket_documented_variables_reach_the_run_container(live_stack, world, clone):
    """A variable the user passes with a BITBUCKET_ name (an app password, an access token) is theirs: only ENV forwards it."""
    with probe("BITBUCKET_-prefixed secrets passed to the pipe"):
        run = live_stack.run_pipe(clone, variables(
            world, SERVICE_ACCOUNT=world.labels["service_account"], IMAGE=APP_IMAGE, SCRIPT="env | sort",
            BITBUCKET_APP_PASSWORD="app-password-value-0123", BITBUCKET_ACCESS_TOKEN="access-token-value-4567",
        ), step_token(world))
        assert run.exit_code == 0, run.output
        names = {line.split("=", 1)[0] for line in run.stdout.splitlines() if "=" in line}
        assert {"BITBUCKET_BRANCH", "BITBUCKET_CLONE_DIR", "CI"} <= names
        assert not names & {"BITBUCKET_APP_PASSWORD", "BITBUCKET_ACCESS_TOKEN", "BITBUCKET_STEP_OIDC_TOKEN"}
        assert "app-password-value-0123" not in run.stdout and "access-token-value-4567" not in run.stdout
