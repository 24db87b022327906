"""The pipe's variables: one table (the toolkit schema, README and pipe.yml are checked against it)
and the validated, typed Config built from them."""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipe import google_registries, parsers, provider, service_accounts, urls, user_cred_config
from pipe.errors import PipeError
from pipe.provider import Provider

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
MAX_LIFETIME = user_cred_config.MAX_LIFETIME


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
    provider: Provider
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
    subject_token_type: str = user_cred_config.JWT  # what STS is told the step token is (GOOGLE_OIDC_CONFIG_FILE may say id_token)
    # Who chose each setting that did not take its default: the variable's own name, or "GOOGLE_OIDC_CONFIG_FILE's <field>".
    sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def token_url(self) -> str:
        return f"{self.sts_endpoint}/v1/token"

    def iam_url(self, email: str, method: str) -> str:
        return f"{self.iam_endpoint}/v1/projects/-/serviceAccounts/{email}:{method}"


def clone_dir(env: dict, cwd: Path) -> Path:
    """BITBUCKET_CLONE_DIR, or the working directory when unset (a local run). pipe.clone_dirs opens it, and says so in
    one line when it is no directory."""
    value = _given(env, "BITBUCKET_CLONE_DIR")
    return Path(value) if value else cwd  # as given: a directory's name may end in spaces or a line break


def _given(env: dict, name: str) -> str | None:
    """A variable's value, None when unset or blank."""
    value = env.get(name)
    if value is None or value.strip() == "":
        return None
    return value


class _Settings:
    """The variables, falling back on what GOOGLE_OIDC_CONFIG_FILE says, remembering who chose each setting."""

    def __init__(self, env: dict, cwd: Path):
        self.env = env
        self.file = user_cred_config.load(_given(env, user_cred_config.NAME), cwd, clone_dir(env, cwd))
        self.sources: dict[str, str] = {}

    def pick(self, name: str) -> str | None:
        if (value := _given(self.env, name)) is not None:
            self.sources[name] = name
            return value
        if name in self.file.variables:
            self.sources[name] = f"{user_cred_config.NAME}'s {self.file.fields[name]}"
            return self.file.variables[name]
        return None

    def given(self, name: str) -> str | None:
        return _given(self.env, name)

    def flag(self, name: str) -> bool:
        return parsers.boolean(name, self.env.get(name))


def load(env: dict, cwd: Path) -> Config:
    """Validate every variable before any network call; raise PipeError on the first bad one."""
    settings = _Settings(env, cwd)
    settings.flag("DEBUG")  # checked like every variable; the toolkit's logging applies it (main.enable_debug_log_level)
    identity = _identity(settings)
    run = _run(settings, cwd)
    fields = {**identity, **run, **_endpoints(settings), **_tokens(settings, identity["service_account"]), **_reliability(settings)}
    return Config(**fields, sources=settings.sources, subject_token_type=settings.file.subject_token_type)


def _identity(settings: _Settings) -> dict:
    """Who the pipe signs in as: the provider, the service account and its delegation chain, the project."""
    raw_provider = settings.pick("WORKLOAD_IDENTITY_PROVIDER")
    if raw_provider is None:
        raise PipeError(
            f"WORKLOAD_IDENTITY_PROVIDER is required: set it to {provider.SHAPE} (or give GOOGLE_OIDC_CONFIG_FILE)."
        )
    sa = settings.pick("SERVICE_ACCOUNT")
    service_account = parsers.service_account("SERVICE_ACCOUNT", sa) if sa else None
    delegates = tuple(parsers.service_account("DELEGATES", d) for d in parsers.string_list("DELEGATES", settings.env))
    if delegates and service_account is None:
        raise PipeError("DELEGATES needs SERVICE_ACCOUNT: Google mints these only for a service account, so set SERVICE_ACCOUNT too.")
    project = settings.given("PROJECT_ID")
    return {
        "provider": parsers.workload_identity_provider("WORKLOAD_IDENTITY_PROVIDER", raw_provider),
        "service_account": service_account,
        "delegates": delegates,
        "project_id": parsers.project_id("PROJECT_ID", project) if project else service_accounts.project_id(service_account),
    }


def _run(settings: _Settings, cwd: Path) -> dict:
    """What the pipe does: the action, the image and what runs in it, where, and who may receive registry tokens."""
    env = settings.env
    raw_image = settings.given("IMAGE")
    image = parsers.image("IMAGE", raw_image) if raw_image else None
    script = settings.given("SCRIPT")
    command = parsers.string_list("COMMAND", env)
    if script and command:
        raise PipeError("SCRIPT and COMMAND are both set: use SCRIPT for shell lines or COMMAND for exec form, not both.")
    action = _action(settings.given("ACTION"), image, script, command)
    if action in ("pull", "run") and image is None:
        raise PipeError(f"ACTION is '{action}' but IMAGE is not set: set IMAGE to the private image to {action}.")
    network, host_internal, storage = settings.given("NETWORK"), settings.given("BITBUCKET_DOCKER_HOST_INTERNAL"), settings.given("BITBUCKET_PIPE_STORAGE_DIR")
    return {
        "action": action,
        "image": image,
        "script": script,
        "command": command,
        "env": dict(parsers.env_entry("ENV", item, env) for item in parsers.string_list("ENV", env)),
        "registries": tuple(parsers.registry_host("REGISTRIES", item) for item in parsers.string_list("REGISTRIES", env)),
        "network": parsers.network("NETWORK", network) if network else None,
        "docker_host_internal": parsers.ip_address("BITBUCKET_DOCKER_HOST_INTERNAL", host_internal) if host_internal else None,
        "workdir": cwd,
        "clone_dir": clone_dir(env, cwd),
        "storage_dir": Path(storage) if storage else None,
        "restrict_to": parsers.restriction("SETUP_RESTRICT_TO", settings.given("SETUP_RESTRICT_TO")),
    }


_ENDPOINT_SERVICES = {"STS_ENDPOINT": "sts", "IAM_CREDENTIALS_ENDPOINT": "iamcredentials"}


def default_endpoint(name: str, universe: str) -> str:
    """Google's own root for STS_ENDPOINT or IAM_CREDENTIALS_ENDPOINT in a universe."""
    return f"https://{_ENDPOINT_SERVICES[name]}.{universe}"


def _endpoints(settings: _Settings) -> dict:
    """Where the step token and Google's tokens go: the universe and its STS and IAM Credentials roots."""
    universe = parsers.universe_domain("UNIVERSE_DOMAIN", settings.pick("UNIVERSE_DOMAIN") or GOOGLE_DOMAIN)
    roots = {}
    for name in _ENDPOINT_SERVICES:
        roots[name] = parsers.endpoint(name, settings.pick(name) or default_endpoint(name, universe))
        if name not in settings.sources and "UNIVERSE_DOMAIN" in settings.sources:
            settings.sources[name] = settings.sources["UNIVERSE_DOMAIN"]  # the default host follows whoever chose the universe
        _only_google_from_a_file(settings, name, urls.parse(roots[name]).host)
    return {"universe_domain": universe, "sts_endpoint": roots["STS_ENDPOINT"], "iam_endpoint": roots["IAM_CREDENTIALS_ENDPOINT"]}


def _only_google_from_a_file(settings: _Settings, name: str, host: str) -> None:
    """A committed file may not send tokens outside googleapis.com: anyone who can push, or an image run earlier in the
    step (the clone is read-write to it), could change it. Another universe or host takes a variable of the pipe's."""
    chooser = settings.sources.get(name, "")
    trusted = [GOOGLE_DOMAIN] + ([settings.env["UNIVERSE_DOMAIN"].strip()] if settings.sources.get("UNIVERSE_DOMAIN") == "UNIVERSE_DOMAIN" else [])
    if not chooser.startswith(user_cred_config.NAME) or any(urls.is_within(host, domain) for domain in trusted):
        return
    raise PipeError(
        f"{chooser} would send {'the step token' if name == 'STS_ENDPOINT' else 'a Google token'} to {host}, outside "
        f"{GOOGLE_DOMAIN}: a file in the repository cannot choose where tokens go; if you trust that host, set {name} "
        "(or UNIVERSE_DOMAIN, for another universe) in the pipe's variables, which override the file.")


def _tokens(settings: _Settings, service_account: str | None) -> dict:
    """The tokens minted and where they are handed on: scopes, lifetime, ID token, audit reason, exports."""
    env = settings.env
    id_audience = parsers.id_token_audience("ID_TOKEN_AUDIENCE", raw) if (raw := settings.given("ID_TOKEN_AUDIENCE")) else None
    if id_audience and service_account is None:
        raise PipeError("ID_TOKEN_AUDIENCE needs SERVICE_ACCOUNT: Google mints these only for a service account, so set SERVICE_ACCOUNT too.")
    lifetime = settings.pick("ACCESS_TOKEN_LIFETIME")
    reason = settings.given("REQUEST_REASON")
    return {
        "scopes": tuple(parsers.scope("ACCESS_TOKEN_SCOPES", s) for s in parsers.string_list("ACCESS_TOKEN_SCOPES", env)) or (CLOUD_PLATFORM,),
        "lifetime": parsers.seconds("ACCESS_TOKEN_LIFETIME", lifetime, 1, MAX_LIFETIME) if lifetime else 3600,
        "id_token_audience": id_audience,
        "id_token_include_email": settings.flag("ID_TOKEN_INCLUDE_EMAIL"),
        "request_reason": parsers.header_value("REQUEST_REASON", reason) if reason else None,
        "export_credentials": settings.flag("EXPORT_CREDENTIALS"),
        "credentials_in_container": settings.flag("GOOGLE_CREDENTIALS_IN_CONTAINER"),
    }


def _reliability(settings: _Settings) -> dict:
    """How hard the pipe tries: attempts, and the time one call and one exchange may take."""
    return {
        "retry_attempts": _whole_number(settings, "RETRY_MAX_ATTEMPTS", 5, 1, 10),
        "retry_max_time": parsers.seconds("RETRY_MAX_TIME", settings.given("RETRY_MAX_TIME") or "120s", 1, 3600),
        "request_timeout": parsers.seconds("REQUEST_TIMEOUT", settings.given("REQUEST_TIMEOUT") or "30s", 1, 600),
    }


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
            fix = ("check that file (anyone who can push to the repository can change it)" if chooser.startswith(user_cred_config.NAME)
                   else f"unset {chooser} unless you trust that host")
            lines.append(f"{what} will be sent to {host}, outside {' and '.join(trusted)}, because {chooser} says so: {fix}.")
    for netloc in cfg.registries:
        if not google_registries.is_google(netloc) and outside(urls.parse(f"https://{netloc}").host):
            lines.append(f"Google access tokens may be sent to the registry {netloc}{google_registries.mistyped(netloc)}, which "
                         "is not Google's, because REGISTRIES lists it: keep it only if you trust that host.")
    return lines


def _whole_number(settings: _Settings, name: str, default: int, minimum: int, maximum: int) -> int:
    raw = settings.given(name)
    if raw is None:
        return default
    if not re.fullmatch(r"[0-9]{1,3}", raw.strip()) or not minimum <= int(raw.strip()) <= maximum:
        raise parsers.bad(name, raw, f"a whole number from {minimum} to {maximum}")
    return int(raw.strip())


def _action(raw: str | None, image, script, command) -> str:
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
