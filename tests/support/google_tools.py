"""Google's own tools as independent clients of what the pipe prints and writes.

gcloud runs with a throwaway configuration and no account, so a command it accepts stops at
"no active account" after parsing and validating every argument, and never reaches Google.
"""

import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.figures import record

GCLOUD = shutil.which("gcloud")
NODE = shutil.which("node")
TERRAFORM = shutil.which("terraform")  # not Google's, but the other reader of what ACTION setup prints
NO_ACCOUNT = "You do not currently have an active account selected"


def missing_tools() -> list[str]:
    return [name for name, path in (("gcloud", GCLOUD), ("node", NODE), ("terraform", TERRAFORM)) if path is None]


def report_missing() -> None:
    """One loud figures line when a client is missing (its tests are skipped, not passed)."""
    missing = missing_tools()
    if missing:
        record("google clients", f"!!! {' and '.join(missing)} not installed: their interoperability tests were SKIPPED !!!")


def gcloud_env(config_dir: str | Path, **extra: str) -> dict:
    """A clean environment for gcloud: its own config dir, no prompts, none of this machine's global CA override."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDSDK_", "GOOGLE_"))}
    env.update(CLOUDSDK_CONFIG=str(config_dir), CLOUDSDK_CORE_DISABLE_PROMPTS="1", **extra)
    return env


def gcloud(args: list[str], config_dir: str | Path, timeout: int = 120, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([GCLOUD, *args], env=gcloud_env(config_dir, **extra), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def split_command(text: str) -> list[str]:
    """A command as printed (backslash-newline continuations, shell quoting) → argv, as bash would split it."""
    return shlex.split(text.replace("\\\n", " "))


def gcloud_verdict(command: str) -> tuple[bool, str]:
    """(accepted, gcloud's stderr) for one printed gcloud command, run with no account."""
    argv = split_command(command)
    assert argv and argv[0] == "gcloud", f"not a gcloud command: {command!r}"
    with tempfile.TemporaryDirectory() as config_dir:
        result = gcloud(argv[1:], config_dir)
    return NO_ACCOUNT in result.stderr, result.stderr.strip()
