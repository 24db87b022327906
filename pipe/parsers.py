"""Parsers for pipe variables: each turns one raw string into a value or raises PipeError.

Every rule names the variable, the value (as shown.echo shows it: at most 80 characters, control characters
escaped, hidden when it could be a key or token) and the expected form, so a bad value is one line the user
can act on. No parser raises anything but PipeError. URLs and hosts are read by pipe.urls, the one reading
for every decision about where a token may go.
"""

import ipaddress
import re
from dataclasses import dataclass

from pipe import bitbucket, gcloud, google_registries, provider, service_accounts, shown, urls
from pipe.errors import PipeError
from pipe.provider import Provider

_TRUE = {"true", "yes", "y", "on", "1"}
_FALSE = {"false", "no", "n", "off", "0", ""}

TEXT_LIMIT = 1024  # free text the pipe sends or prints (REQUEST_REASON, ID_TOKEN_AUDIENCE)


def bad(name: str, value: str, expected: str, secret: bool = False, why: str | None = None) -> PipeError:
    """`NAME is 'value', but it must be <expected>[: <why>].` (the value as echo() shows it)."""
    value_shown = "(hidden)" if secret else shown.echo(value)
    return PipeError(f"{name} is {value_shown}, but it must be {expected}" + (f": {why}." if why else "."))


def boolean(name: str, value: str | None, default: bool = False) -> bool:
    if value is None:
        return default
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise bad(name, value, "'true' or 'false'")


# --- Workload identity provider ---------------------------------------------------------

def workload_identity_provider(name: str, value: str) -> Provider:
    text = value.strip()
    found = provider.parse(text)
    if found:
        return found
    for prefix in provider.PREFIXES:
        text = text.removeprefix(prefix)
    raise bad(name, value, f"the provider's resource name {provider.SHAPE}", why=_provider_hint(text))


def _provider_hint(text: str) -> str:
    """The likeliest mistake, so the fix is in the message."""
    parts = text.split("/")
    if len(parts) >= 2 and parts[0] == "projects" and len(parts[1]) <= shown.ECHO_LIMIT and _PROJECT_ID_RE.fullmatch(parts[1]):
        return (
            f"'{parts[1]}' is a project ID, but Workload Identity Federation needs the project NUMBER "
            f"(`{gcloud.project_number(parts[1])}`)"
        )
    if "workforcePools" in text:
        return "it names a workforce pool (for people); the pipe needs a workload identity pool's provider"
    if len(parts) >= 4 and parts[2] == "locations" and parts[3] != "global":
        return "workload identity pools always live in locations/global"
    if re.fullmatch(r"projects/[0-9]+/locations/global/workloadIdentityPools/[^/]+/?", text):
        return "it names a pool, not a provider: add /providers/<PROVIDER_ID>"
    if "workloadIdentityPools" not in text:
        return "it is not a workload identity provider resource name"
    lowered_ids = re.sub(r"(workloadIdentityPools|providers)/([^/]+)", lambda m: f"{m[1]}/{m[2].lower()}", text)
    if lowered_ids != text and provider.NAME_RE.fullmatch(lowered_ids):
        return "pool and provider IDs are lowercase"
    prefix = re.match(provider.NAME_RE.pattern + "(?![a-z0-9-])", text)  # a valid name, then junk
    if prefix:
        return f"remove {shown.echo(text[prefix.end():])} after the provider ID"
    return "it does not have that shape (pool and provider IDs are 4-32 lowercase letters, digits or hyphens, not gcp-…)"


# --- Service account and project -----------------------------------------------------------

_PROJECT_ID_RE = re.compile(rf"(?:[a-z][a-z0-9.-]*:)?{service_accounts.PROJECT_ID}")  # domain-scoped IDs too


def service_account(name: str, value: str) -> str:
    text = value.strip()
    if service_accounts.is_email(text):
        return text
    why = "e-mails are lowercase" if service_accounts.is_email(text.lower()) else None
    raise bad(name, value, "a service account e-mail such as deployer@my-project.iam.gserviceaccount.com", why=why)


def project_id(name: str, value: str) -> str:
    text = value.strip()
    if _PROJECT_ID_RE.fullmatch(text):
        return text
    raise bad(name, value, "a project ID (6-30 lowercase letters, digits or hyphens, starting with a letter)")


# --- Lists -------------------------------------------------------------------------------


MAX_ITEMS = 1000  # CHOSEN: far above any real COMMAND, ENV or REGISTRIES list, and bounds the work


# Lists whose items may hold commas (`ENV: ["URLS=a,b"]`, `COMMAND: ["--only=a,b"]`): as one plain string, they are
# split on line breaks only. Registries, scopes and e-mails never hold a comma, so commas separate those too.
LINES_ONLY = ("COMMAND", "ENV")


def string_list(name: str, env: dict) -> list[str]:
    """A list variable: Bitbucket's NAME_COUNT/NAME_0.. form (a YAML list), or NAME as one string split on line
    breaks (and on commas, outside LINES_ONLY)."""
    count = env.get(f"{name}_COUNT")
    if count is not None and count.strip() != "":
        count = count.strip()
        # ASCII digits only (str.isdigit() accepts '²'), and few of them: int() refuses over 4300 digits.
        if not re.fullmatch(r"[0-9]{1,4}", count) or int(count) > MAX_ITEMS:
            raise bad(f"{name}_COUNT", count, f"a whole number from 0 to {MAX_ITEMS} (Bitbucket sets it for YAML lists)")
        items = []
        for i in range(int(count)):
            item = env.get(f"{name}_{i}")
            if item is None:
                raise PipeError(f"{name}_COUNT is {count} but {name}_{i} is missing: write {name} as a YAML list.")
            items.append(item)
        return items
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return []
    items = [item.strip() for item in re.split(r"\n" if name in LINES_ONLY else r"[,\n]", raw) if item.strip()]
    if len(items) > MAX_ITEMS:
        raise PipeError(f"{name} has {len(items)} items, but a list takes at most {MAX_ITEMS}: shorten it.")
    return items


# --- Images and registries -----------------------------------------------------------------

_HOST_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"{_HOST_COMPONENT}(?:\.{_HOST_COMPONENT})*(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"  # Docker's \w is ASCII; Python's is Unicode
_DIGEST = r"(?P<algorithm>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*):(?P<hex>[0-9a-fA-F]{32,})"
_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}  # the algorithms the daemon verifies
_IMAGE_RE = re.compile(
    rf"(?P<name>(?:(?P<host>{_HOST})/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?"
)


@dataclass(frozen=True)
class Image:
    host: str  # registry host[:port], docker.io when the reference names none
    repository: str  # host/path, what the daemon pulls
    path: str  # path inside the registry (project/repo/image on Artifact Registry)
    tag: str | None
    digest: str | None

    @property
    def reference(self) -> str:
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag or 'latest'}"

    @property
    def display(self) -> str:
        """The reference as a line shows it: at most 80 characters, or hidden when part of it could be a secret."""
        return "the image (its name looks like a secret)" if shown.looks_secret(self.reference) else shown.clipped(self.reference)


IMAGE_FORM = "an image reference such as us-docker.pkg.dev/my-project/my-repo/builder:1.4 or …@sha256:<64 hex>"


def image(name: str, value: str) -> Image:
    text = value.strip()
    match = _IMAGE_RE.fullmatch(text)
    if not match:
        raise bad(name, value, IMAGE_FORM, why=_image_hint(text))
    if len(match["name"]) > 255:
        raise bad(name, value, IMAGE_FORM, why=f"the name has {len(match['name'])} characters, Docker allows 255")
    digest, hexdigits = match["digest"], match["hex"]
    if digest and (_DIGEST_LENGTHS.get(match["algorithm"]) != len(hexdigits) or hexdigits != hexdigits.lower()):
        raise bad(name, value, IMAGE_FORM, why="a digest is sha256: and exactly 64 lowercase hex digits")
    host, path = google_registries.split_name(match["name"])
    if why := google_registries.docker_host_problem(host):
        raise bad(name, value, IMAGE_FORM, why=why)
    return Image(host=host.lower(), repository=match["name"], path=path, tag=match["tag"], digest=digest)


def _image_hint(text: str) -> str | None:
    if "://" in text:
        return "no scheme, just host/path:tag"
    if any(c.isspace() for c in text):
        return "it contains spaces"
    if text.endswith(":") or ":@" in text:
        return "the tag after ':' is empty"
    if text.endswith("@"):
        return "the digest after '@' is empty"
    if _IMAGE_RE.fullmatch(text.lower()):
        return "repository paths are lowercase"
    return None


REGISTRY_FORM = "a registry host such as europe-docker.pkg.dev or registry.example.com:5000"


def registry_host(name: str, value: str) -> str:
    """host[:port], exactly as pipe.urls reads a netloc: nothing another client could read as another host."""
    text = value.strip().lower()
    for scheme in ("https://", "http://"):
        if text.startswith(scheme):
            text = text[len(scheme):]
    text = text.removesuffix("/")
    url = urls.parse(f"https://{text}")
    if url is not None and url.netloc == text:
        if why := google_registries.docker_host_problem(text):
            raise bad(name, value, REGISTRY_FORM, why=why)
        return text
    raise bad(name, value, REGISTRY_FORM, why=_url_hint(f"https://{text}"))


# --- Endpoints ---------------------------------------------------------------------------

ENDPOINT_FORM = "an https:// URL such as https://sts.googleapis.com"
_ROOT_PATH_RE = re.compile(r"(?:/(?!\.\.?(?:/|$))[A-Za-z0-9._~-]+)*")  # plain segments: no '.', '..', '//' or escapes


def endpoint(name: str, value: str) -> str:
    """An API root such as https://sts.googleapis.com, read by pipe.urls. Plain http only on loopback (local emulators)."""
    text = value.strip()
    url = urls.parse(text.removesuffix("/"))
    # The pipe appends /v1/token etc.: a query, or a path another client would normalise, would change the URL.
    if url is None or url.query is not None or not _ROOT_PATH_RE.fullmatch(url.path):
        raise bad(name, value, ENDPOINT_FORM, why=_url_hint(text))
    if not urls.may_carry_tokens(url):
        raise bad(name, value, ENDPOINT_FORM, why="tokens are never sent over plain http except to localhost")
    return str(url)


def _url_hint(text: str) -> str | None:
    """Why pipe.urls refused a URL, in the user's terms."""
    scheme, _, rest = text.partition("://")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if scheme.lower() not in ("http", "https"):
        return "it must start with https://"
    if "\\" in text:  # WHATWG reads it as '/', Python's urllib as part of the host or user name
        return "no backslashes"
    if "@" in authority:
        return "no user name or password in the URL"
    if not text.isascii():
        return "ASCII only (write an international domain name in its xn-- form)"
    if "?" in text or "#" in text:
        return "no query or fragment: the pipe appends the API path"
    if any(c.isspace() for c in text):
        return "it contains spaces"
    return None


def universe_domain(name: str, value: str) -> str:
    """A DNS domain under which sts.<domain> and iamcredentials.<domain> are read by pipe.urls as written."""
    text = value.strip().lower()
    url = urls.parse(f"https://sts.{text}")
    if url is not None and url.netloc == f"sts.{text}" and re.search(r"\.[a-z][a-z0-9-]*$", text):
        return text
    raise bad(name, value, "a domain such as googleapis.com")


_CLIENT_ID_RE = re.compile(r"[0-9]+-[a-z0-9]+\.apps\.googleusercontent\.com")
AUDIENCE_FORM = (
    "a Cloud Run or Cloud Functions URL such as https://my-service-abc123-uc.a.run.app, "
    "or an IAP OAuth client ID such as 123456789012-abc123.apps.googleusercontent.com"
)


def id_token_audience(name: str, value: str) -> str:
    """The audience of a minted ID token: printed in the log and sent to generateIdToken, so only these two forms."""
    text = value.strip()
    if len(text) <= TEXT_LIMIT:
        if _CLIENT_ID_RE.fullmatch(text):
            return text
        url = urls.parse(text)
        if url is not None and url.scheme == "https":
            return str(url)
    if len(text) > TEXT_LIMIT:
        why = f"at most {TEXT_LIMIT} characters"
    elif text.lower().startswith("http://"):
        why = "https only: Cloud Run, Cloud Functions and IAP serve https"
    elif text.lower().endswith(".apps.googleusercontent.com"):
        why = "a client ID is <digits>-<lowercase letters and digits>.apps.googleusercontent.com"
    else:
        why = _url_hint(text)
    raise bad(name, value, AUDIENCE_FORM, why=why)


SCOPE_PREFIX = "https://www.googleapis.com/auth/"
_SCOPE_RE = re.compile(r"https://[a-z0-9.-]+/[A-Za-z0-9._/-]+|[A-Za-z0-9._-]+")


def scope(name: str, value: str) -> str:
    """An OAuth scope URL, or its short name (cloud-platform) under https://www.googleapis.com/auth/."""
    text = value.strip()
    if len(text) > TEXT_LIMIT or not _SCOPE_RE.fullmatch(text):  # sent to Google: bounded like all free text
        raise bad(name, value, "a scope URL such as https://www.googleapis.com/auth/cloud-platform, or cloud-platform")
    return text if text.startswith("https://") else SCOPE_PREFIX + text


def header_value(name: str, value: str) -> str:
    """Free text sent as an HTTP header (REQUEST_REASON): printable ASCII, which every HTTP stack accepts.
    A newline would be refused by requests only once the token exchange starts, anything else by http.client."""
    text = value.strip()
    if re.fullmatch(r"[ -~]{1,1024}", text):
        return text
    raise bad(name, value, "one line of printable ASCII (letters, digits, spaces and punctuation, at most 1024)")


# --- Container settings ----------------------------------------------------------------------

_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def env_entry(name: str, item: str, environ: dict) -> tuple[str, str]:
    """NAME=VALUE, or NAME to forward the pipe's own value."""
    key, sep, value = item.partition("=")
    if not _ENV_NAME_RE.fullmatch(key):  # only the name is shown: the value may be a secret
        raise PipeError(
            f"{name} has the entry {shown.echo(key)}, but each entry must be NAME=VALUE or NAME "
            "(letters, digits and underscores, not starting with a digit)."
        )
    name_shown = key if shown.echo(key) == repr(key) else "NAME"  # a valid name, but maybe a pasted secret or 100 KB long
    step_tokens = [environ[c] for c in bitbucket.CREDENTIALS if len(environ.get(c) or "") >= 32]
    if key in bitbucket.CREDENTIALS or (sep and any(token in value for token in step_tokens)):
        raise PipeError(
            f"{name} hands the image {name_shown if key in bitbucket.CREDENTIALS else 'the step token'}, but the step's token "
            "is never passed as a variable: remove it, and set GOOGLE_CREDENTIALS_IN_CONTAINER: 'true' if the container "
            "needs Google credentials (mounted read-only, and removed after the run)."
        )
    if sep:
        return key, value
    if key not in environ:
        raise PipeError(
            f"{name} forwards {shown.echo(key) if name_shown == 'NAME' else key}, but the pipe has no such variable: pass it as "
            f"{name_shown}=VALUE or add {name_shown}: ${name_shown} to the pipe's variables."
        )
    return key, environ[key]


_NETWORK_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")  # Docker's network names


def network(name: str, value: str) -> str:
    """host, none, bridge, or a user-defined network's name."""
    text = value.strip()
    if _NETWORK_RE.fullmatch(text):
        return text
    raise bad(name, value, "host, none, or the name of a Docker network such as my-services")


def ip_address(name: str, value: str) -> str:
    text = value.strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise bad(name, value, "an IP address such as 10.39.202.217") from None


# --- Durations -------------------------------------------------------------------------------


def seconds(name: str, value: str, minimum: int, maximum: int) -> int:
    """A protobuf-style duration such as 3600s (a bare number of seconds is accepted too)."""
    text = value.strip().lower()
    match = re.fullmatch(r"([0-9]{1,9})s?", text)
    if not match or not minimum <= int(match[1]) <= maximum:
        raise bad(name, value, f"a number of seconds such as 3600s, between {minimum}s and {maximum}s")
    return int(match[1])


# --- SETUP_RESTRICT_TO -------------------------------------------------------------------------

RESTRICT_VARIABLE = "SETUP_RESTRICT_TO"
RESTRICT_LEVELS = ("repository", "branch", "deployment")


@dataclass(frozen=True)
class Restriction:
    """The repository is always pinned; branch and deployment environment optionally too."""

    branch: bool = False
    deployment: bool = False

    def __str__(self) -> str:
        return ",".join(["repository"] + ["branch"] * self.branch + ["deployment"] * self.deployment)


def restriction(name: str, value: str | None) -> Restriction:
    words = [word.lower() for word in re.split(r"[\s,]+", (value or "").strip()) if word]
    if any(word not in RESTRICT_LEVELS for word in words):
        raise bad(name, value or "", "'repository' (the default), 'branch', 'deployment' or 'branch,deployment'")
    return Restriction(branch="branch" in words, deployment="deployment" in words)
