"""The pipe's variables: one table (the toolkit schema, README and pipe.yml are checked against it)
and the validated, typed Config built from them."""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipe import config_file, parsers, urls
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
    "NETWORK": "string",
    "ACTION": "string",
    "SETUP_RESTRICT_TO": "string",
    "REGISTRIES": "list",
    "STS_ENDPOINT": "string",
    "IAM_CREDENTIALS_ENDPOINT": "string",
    "UNIVERSE_DOMAIN": "string",
    "OIDC_TOKEN": "string",
    "EXPORT_CREDENTIALS": "boolean",
    "ACCESS_TOKEN_LIFETIME": "string",
    "ACCESS_TOKEN_SCOPES": "list",
    "DELEGATES": "list",
    "PROJECT_ID": "string",
    "REQUEST_REASON": "string",
    "ID_TOKEN_AUDIENCE": "string",
    "ID_TOKEN_INCLUDE_EMAIL": "boolean",
    "GOOGLE_OIDC_CONFIG_FILE": "string",
    "GOOGLE_CREDENTIALS_IN_CONTAINER": "boolean",
    "RETRY_MAX_ATTEMPTS": "string",
    "RETRY_MAX_TIME": "string",
    "REQUEST_TIMEOUT": "string",
    "DEBUG": "boolean",
}

# Read straight from the environment (Bitbucket sets them), never declared as pipe variables.
CONTEXT = ("BITBUCKET_STEP_OIDC_TOKEN", "BITBUCKET_CLONE_DIR", "BITBUCKET_PIPE_STORAGE_DIR", "BITBUCKET_DOCKER_HOST_INTERNAL")

ACTIONS = ("auth", "pull", "run", "setup", "doctor")
DIAGNOSTIC_ACTIONS = ("setup", "doctor")  # read-only: they ignore SCRIPT/COMMAND rather than refuse them
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
GOOGLE_DOMAIN = "googleapis.com"
MAX_LIFETIME = config_file.MAX_LIFETIME


class StringsValidator:
    """The toolkit's validator seam. Every variable is declared a string and the parsers apply the real
    rules, so Cerberus would only re-check types at ~60 ms per step; this keeps the variables as given."""

    errors: dict = {}

    def validate(self, document: dict) -> bool:
        return True  # the toolkit hands string-typed variables over unchanged

    def validated(self, document: dict) -> dict:
        return dict(document)


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
    scopes: tuple[str, ...] = (CLOUD_PLATFORM,)
    lifetime: int = 3600
    delegates: tuple[str, ...] = ()
    project_id: str | None = None
    request_reason: str | None = None
    id_token_audience: str | None = None
    id_token_include_email: bool = False
    export_credentials: bool = False
    credentials_in_container: bool = False
    storage_dir: Path | None = None
    retry_attempts: int = 5
    retry_max_time: int = 120
    request_timeout: int = 30
    network: str | None = None  # None: the daemon's default network
    docker_host_internal: str | None = None  # what host.docker.internal means for the run container
    restrict_to: parsers.Restriction = parsers.Restriction()
    subject_token_type: str = config_file.JWT  # what STS is told the step token is (GOOGLE_OIDC_CONFIG_FILE may say id_token)
    # Who chose each setting that did not take its default: the variable's own name, or "GOOGLE_OIDC_CONFIG_FILE's <field>".
    sources: Mapping[str, str] = field(default_factory=dict)

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
    from_file = config_file.load(_text(env, "GOOGLE_OIDC_CONFIG_FILE"), cwd)
    sources: dict[str, str] = {}

    def pick(name: str) -> str | None:
        """The variable if set, else what the config file says; records which one chose it."""
        if (value := _text(env, name)) is not None:
            sources[name] = name
            return value
        if name in from_file.variables:
            sources[name] = f"{config_file.NAME}'s {from_file.fields[name]}"
            return from_file.variables[name]
        return None

    raw_provider = pick("WORKLOAD_IDENTITY_PROVIDER")
    if raw_provider is None:
        raise PipeError(
            f"WORKLOAD_IDENTITY_PROVIDER is required: set it to {parsers.PROVIDER_SHAPE} (or give GOOGLE_OIDC_CONFIG_FILE)."
        )
    provider = parsers.provider("WORKLOAD_IDENTITY_PROVIDER", raw_provider)

    sa = pick("SERVICE_ACCOUNT")
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

    universe = parsers.universe_domain("UNIVERSE_DOMAIN", pick("UNIVERSE_DOMAIN") or GOOGLE_DOMAIN)
    endpoints = {}
    for name, service in (("STS_ENDPOINT", "sts"), ("IAM_CREDENTIALS_ENDPOINT", "iamcredentials")):
        endpoints[name] = parsers.endpoint(name, pick(name) or f"https://{service}.{universe}")
        if name not in sources and "UNIVERSE_DOMAIN" in sources:
            sources[name] = sources["UNIVERSE_DOMAIN"]  # the default host follows whoever chose the universe

    delegates = tuple(parsers.service_account("DELEGATES", d) for d in parsers.string_list("DELEGATES", env))
    id_audience = parsers.id_token_audience("ID_TOKEN_AUDIENCE", raw) if (raw := _text(env, "ID_TOKEN_AUDIENCE")) else None
    for name, needed in (("DELEGATES", delegates), ("ID_TOKEN_AUDIENCE", id_audience)):
        if needed and service_account is None:
            raise PipeError(f"{name} needs SERVICE_ACCOUNT: Google mints these only for a service account, so set SERVICE_ACCOUNT too.")
    lifetime = pick("ACCESS_TOKEN_LIFETIME")
    scopes = tuple(parsers.scope("ACCESS_TOKEN_SCOPES", s) for s in parsers.string_list("ACCESS_TOKEN_SCOPES", env)) or (CLOUD_PLATFORM,)
    raw_project = _text(env, "PROJECT_ID")
    storage = _text(env, "BITBUCKET_PIPE_STORAGE_DIR")

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
        sts_endpoint=endpoints["STS_ENDPOINT"],
        iam_endpoint=endpoints["IAM_CREDENTIALS_ENDPOINT"],
        universe_domain=universe,
        workdir=cwd,
        clone_dir=clone_dir,
        debug=parsers.boolean("DEBUG", env.get("DEBUG")),
        scopes=scopes,
        lifetime=parsers.seconds("ACCESS_TOKEN_LIFETIME", str(lifetime), 1, MAX_LIFETIME) if lifetime else 3600,
        delegates=delegates,
        project_id=parsers.project_id("PROJECT_ID", raw_project) if raw_project else parsers.project_of(service_account),
        request_reason=parsers.header_value("REQUEST_REASON", reason) if (reason := _text(env, "REQUEST_REASON")) else None,
        id_token_audience=id_audience,
        id_token_include_email=parsers.boolean("ID_TOKEN_INCLUDE_EMAIL", env.get("ID_TOKEN_INCLUDE_EMAIL")),
        export_credentials=parsers.boolean("EXPORT_CREDENTIALS", env.get("EXPORT_CREDENTIALS")),
        credentials_in_container=parsers.boolean("GOOGLE_CREDENTIALS_IN_CONTAINER", env.get("GOOGLE_CREDENTIALS_IN_CONTAINER")),
        storage_dir=Path(storage) if storage else None,
        retry_attempts=_int(env, "RETRY_MAX_ATTEMPTS", 5, 1, 10),
        retry_max_time=parsers.seconds("RETRY_MAX_TIME", _text(env, "RETRY_MAX_TIME") or "120s", 1, 3600),
        request_timeout=parsers.seconds("REQUEST_TIMEOUT", _text(env, "REQUEST_TIMEOUT") or "30s", 1, 600),
        network=parsers.network("NETWORK", network) if (network := _text(env, "NETWORK")) else None,
        docker_host_internal=parsers.ip_address("BITBUCKET_DOCKER_HOST_INTERNAL", host) if (host := _text(env, "BITBUCKET_DOCKER_HOST_INTERNAL")) else None,
        restrict_to=parsers.restriction("SETUP_RESTRICT_TO", _text(env, "SETUP_RESTRICT_TO")),
        subject_token_type=from_file.subject_token_type,
        sources=sources,
    )


def token_destination_warnings(cfg: Config) -> list[str]:
    """One line per host outside Google (and outside a UNIVERSE_DOMAIN set by variable), not loopback, that the
    step token or a Google token is about to reach, naming who chose it. Documented and allowed, but never silent:
    a config file committed to the repository can choose these hosts too. ACTION setup sends nothing."""
    if cfg.action == "setup":
        return []
    trusted = [GOOGLE_DOMAIN] + ([cfg.universe_domain] if cfg.sources.get("UNIVERSE_DOMAIN") == "UNIVERSE_DOMAIN" else [])

    def outside(host: str) -> bool:
        return not urls.is_loopback(host) and not any(urls.is_within(host, domain) for domain in trusted)

    lines = []
    targets = [("STS_ENDPOINT", cfg.sts_endpoint, "The step's OIDC token")]
    if cfg.service_account:
        targets.append(("IAM_CREDENTIALS_ENDPOINT", cfg.iam_endpoint, "A Google access token"))
    for name, root, what in targets:
        host = urls.parse(root).host
        if outside(host):
            chooser = cfg.sources.get(name, name)
            fix = ("check that file (anyone who can push to the repository can change it)" if chooser.startswith(config_file.NAME)
                   else f"unset {chooser} unless you trust that host")
            lines.append(f"{what} will be sent to {host}, outside {' and '.join(trusted)}, because {chooser} says so: {fix}.")
    from pipe import registry  # imports google-auth: only once the variables are valid

    for netloc in cfg.registries:
        if not registry.is_google(netloc) and outside(urls.parse(f"https://{netloc}").host):
            lines.append(f"Google access tokens may be sent to the registry {netloc}, which is not Google's, because REGISTRIES "
                         "lists it: keep it only if you trust that host.")
    return lines


def _int(env: dict, name: str, default: int, minimum: int, maximum: int) -> int:
    raw = _text(env, name)
    if raw is None:
        return default
    if not re.fullmatch(r"[0-9]{1,3}", raw.strip()) or not minimum <= int(raw.strip()) <= maximum:
        raise parsers.bad(name, raw, f"a whole number from {minimum} to {maximum}")
    return int(raw.strip())


def _action(env: dict, image, script, command) -> str:
    raw = _text(env, "ACTION")
    if raw is None:
        if script or command:
            return "run"
        return "pull" if image else "auth"
    action = raw.strip().lower()
    if action not in ACTIONS:
        raise parsers.bad("ACTION", raw, "one of " + ", ".join(ACTIONS))
    if action not in ("run", *DIAGNOSTIC_ACTIONS) and (script or command):
        raise PipeError(f"ACTION is '{action}' but SCRIPT or COMMAND is set: remove ACTION (or set it to 'run') to run them.")
    return action
