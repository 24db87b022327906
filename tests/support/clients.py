"""Google's own clients, run the way a step's next commands run them after `source <export dir>/env`.

Each returns (access token or None, the client's last stderr line); tokens are only ever looked up in the
emulator, never printed. gcloud runs with a throwaway configuration (google_tools.gcloud_env).
"""

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support import google_tools

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "tests" / "node"
TOKEN = re.compile(r"^ya29\.[A-Za-z0-9._-]+$")


def sourced(directory: Path) -> dict[str, str]:
    """The variables the export's `env` script sets, as bash reads it."""
    script = f'set -e; . "{directory}/env"; env -0'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"}).stdout
    names = {line.split("=", 1)[0].removeprefix("export ") for line in (directory / "env").read_text().splitlines()}
    return {k: v for k, v in (item.split("=", 1) for item in out.split("\0") if "=" in item) if k in names}


def _result(process: subprocess.CompletedProcess) -> tuple[str | None, str]:
    token = process.stdout.strip().splitlines()[-1] if process.stdout.strip() else ""
    errors = process.stderr.strip().splitlines()
    return (token if process.returncode == 0 and TOKEN.match(token) else None), (errors[-1] if errors else "")


def gcloud_env_file(exported: dict[str, str]) -> tuple[str | None, str]:
    """`gcloud auth print-access-token` in a step that sourced the env file."""
    with tempfile.TemporaryDirectory() as config_dir:
        return _result(google_tools.gcloud(["auth", "print-access-token"], config_dir, **exported))


def gcloud_adc(exported: dict[str, str]) -> tuple[str | None, str]:
    """`gcloud auth application-default print-access-token`: google-auth's ADC inside gcloud. Without a project in
    the environment it would first ask cloudresourcemanager.googleapis.com for the pool's project."""
    with tempfile.TemporaryDirectory() as config_dir:
        return _result(google_tools.gcloud(["auth", "application-default", "print-access-token"], config_dir, **exported))


def gcloud_login(exported: dict[str, str]) -> tuple[str | None, str]:
    """`gcloud auth login --cred-file` with the file the env names for gcloud, then print-access-token as that account."""
    route = {k: v for k, v in exported.items() if k != "CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE"}
    with tempfile.TemporaryDirectory() as config_dir:
        login = google_tools.gcloud(["auth", "login", f"--cred-file={exported['CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE']}"],
                                    config_dir, **route)
        if login.returncode != 0:
            return None, login.stderr.strip().splitlines()[-1]
        return _result(google_tools.gcloud(["auth", "print-access-token"], config_dir, **route))


PYTHON_DEFAULT = """
import google.auth
from google.auth.transport.requests import Request

credentials, _ = google.auth.default()  # no scopes: with them google-auth first asks cloudresourcemanager for the project
credentials = credentials.with_scopes(["https://www.googleapis.com/auth/cloud-platform"])
credentials.refresh(Request())
print(credentials.token)
"""


def python_default(exported: dict[str, str]) -> tuple[str | None, str]:
    """google-auth's Application Default Credentials, in a fresh interpreter with the exported variables."""
    return _python(PYTHON_DEFAULT, exported)


def python_snippet(snippet: str, exported: dict[str, str]) -> tuple[str | None, str]:
    """A snippet that builds `credentials` (the README's route for a chain), refreshed and its token read."""
    refresh = "\nfrom google.auth.transport.requests import Request\ncredentials.refresh(Request())\nprint(credentials.token)\n"
    return _python(snippet + refresh, exported)


def _python(code: str, exported: dict[str, str]) -> tuple[str | None, str]:
    env = {"PATH": "/usr/bin:/bin", **exported}
    return _result(subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, env=env, timeout=120,
                                  stdin=subprocess.DEVNULL))


def node_installed() -> bool:
    return (NODE_DIR / "node_modules" / "google-auth-library" / "package.json").is_file()


def node_default(exported: dict[str, str]) -> tuple[str | None, str]:
    """Node's google-auth-library (GoogleAuth().getAccessToken()), from the lockfile in tests/node."""
    env = {"PATH": "/usr/bin:/bin", **exported}
    return _result(subprocess.run([google_tools.NODE, str(NODE_DIR / "token.js")], capture_output=True, text=True, env=env,
                                  timeout=120, cwd=NODE_DIR, stdin=subprocess.DEVNULL))


def readme_snippet(section: str, language: str) -> str:
    """The first ```<language> block of a README section, so the suite runs what users copy."""
    text = (ROOT / "README.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return body.split(f"```{language}\n", 1)[1].split("```", 1)[0]
