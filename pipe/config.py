"""The pipe's variables: one table (the toolkit schema, README and pipe.yml are checked against it)
and the validated, typed Config built from them."""

from dataclasses import dataclass, field
from pathlib import Path

from pipe import parsers
from pipe.errors import PipeError

# name -> kind. Every variable is declared as a plain string to the toolkit (its YAML coercion
# and list handling crash or mislead on ordinary input); the parsers below apply the real rules.
VARIABLES = {
    "WORKLOAD_IDENTITY_PROVIDER": "string",
    "SERVICE_ACCOUNT": "string",
    "IMAGE": "string",
    "SCRIPT": "string",
    "COMMAND": "list",
    "ENV": "list",
    "ACTION": "string",
    "REGISTRIES": "list",
    "STS_ENDPOINT": "string",
    "IAM_CREDENTIALS_ENDPOINT": "string",
    "UNIVERSE_DOMAIN": "string",
    "OIDC_TOKEN": "string",
    "DEBUG": "boolean",
}

# Read straight from the environment (Bitbucket sets them), never declared as pipe variables.
CONTEXT = ("BITBUCKET_STEP_OIDC_TOKEN", "BITBUCKET_CLONE_DIR")

ACTIONS = ("auth", "pull", "run")
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


def toolkit_schema() -> dict:
    """A Cerberus schema that accepts any string, so the toolkit never rejects or coerces a value."""
    schema = {name: {"type": "string", "required": False, "nullable": True} for name in VARIABLES}
    for name in CONTEXT:
        schema[name] = {"type": "string", "required": False, "nullable": True}
    return schema


@dataclass(frozen=True)
class Config:
    action: str
    provider: parsers.Provider
    service_account: str | None
    image: parsers.Image | None
    script: str | None
    command: list[str]
    env: dict[str, str]
    registries: tuple[str, ...]
    sts_endpoint: str
    iam_endpoint: str
    universe_domain: str
    workdir: Path
    clone_dir: Path
    debug: bool
    scopes: tuple[str, ...] = field(default=(CLOUD_PLATFORM,))

    @property
    def token_url(self) -> str:
        return f"{self.sts_endpoint}/v1/token"

    def iam_url(self, email: str, method: str) -> str:
        return f"{self.iam_endpoint}/v1/projects/-/serviceAccounts/{email}:{method}"


def _text(env: dict, name: str) -> str | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return None
    return value


def load(env: dict, cwd: Path) -> Config:
    """Validate every variable before any network call; raise PipeError on the first bad one."""
    raw_provider = _text(env, "WORKLOAD_IDENTITY_PROVIDER")
    if raw_provider is None:
        raise PipeError(f"WORKLOAD_IDENTITY_PROVIDER is required: set it to {parsers.PROVIDER_SHAPE}.")
    provider = parsers.provider("WORKLOAD_IDENTITY_PROVIDER", raw_provider)

    sa = _text(env, "SERVICE_ACCOUNT")
    service_account = parsers.service_account("SERVICE_ACCOUNT", sa) if sa else None

    raw_image = _text(env, "IMAGE")
    image = parsers.image("IMAGE", raw_image) if raw_image else None
    script = _text(env, "SCRIPT")
    command = parsers.string_list("COMMAND", env)
    if script and command:
        raise PipeError("SCRIPT and COMMAND are both set: use SCRIPT for shell lines or COMMAND for exec form, not both.")

    action = _action(env, image, script, command)
    if action in ("pull", "run") and image is None:
        raise PipeError(f"ACTION is '{action}' but IMAGE is not set: set IMAGE to the private image to {action}.")

    entries = [parsers.env_entry("ENV", item, env) for item in parsers.string_list("ENV", env)]
    registries = tuple(parsers.registry_host("REGISTRIES", item) for item in parsers.string_list("REGISTRIES", env))

    universe = parsers.universe_domain("UNIVERSE_DOMAIN", _text(env, "UNIVERSE_DOMAIN") or "googleapis.com")
    sts = _text(env, "STS_ENDPOINT") or f"https://sts.{universe}"
    iam = _text(env, "IAM_CREDENTIALS_ENDPOINT") or f"https://iamcredentials.{universe}"

    clone_dir = Path(_text(env, "BITBUCKET_CLONE_DIR") or cwd)
    return Config(
        action=action,
        provider=provider,
        service_account=service_account,
        image=image,
        script=script,
        command=command,
        env=dict(entries),
        registries=registries,
        sts_endpoint=parsers.endpoint("STS_ENDPOINT", sts),
        iam_endpoint=parsers.endpoint("IAM_CREDENTIALS_ENDPOINT", iam),
        universe_domain=universe,
        workdir=cwd,
        clone_dir=clone_dir,
        debug=parsers.boolean("DEBUG", env.get("DEBUG")),
    )


def _action(env: dict, image, script, command) -> str:
    raw = _text(env, "ACTION")
    if raw is None:
        if script or command:
            return "run"
        return "pull" if image else "auth"
    action = raw.strip().lower()
    if action not in ACTIONS:
        raise parsers.bad("ACTION", raw, "one of " + ", ".join(ACTIONS))
    if action != "run" and (script or command):
        raise PipeError(f"ACTION is '{action}' but SCRIPT or COMMAND is set: remove ACTION (or set it to 'run') to run them.")
    return action
