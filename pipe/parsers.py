"""Parsers for pipe variables: each turns one raw string into a value or raises PipeError.

Every rule names the variable, the value (unless it is secret) and the expected form, so a
bad value is one line the user can act on. No parser raises anything but PipeError.
"""

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from pipe.errors import PipeError

PROVIDER_SHAPE = "projects/<PROJECT_NUMBER>/locations/global/workloadIdentityPools/<POOL_ID>/providers/<PROVIDER_ID>"

_TRUE = {"true", "yes", "y", "on", "1"}
_FALSE = {"false", "no", "n", "off", "0", ""}


def bad(name: str, value: str, expected: str, secret: bool = False) -> PipeError:
    shown = "(hidden)" if secret else repr(value)
    return PipeError(f"{name} is {shown}, but it must be {expected}.")


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

_POOL_OR_PROVIDER_ID = r"[a-z0-9-]{4,32}"
_PROVIDER_RE = re.compile(
    rf"projects/(?P<number>\d+)/locations/global/workloadIdentityPools/(?P<pool>{_POOL_OR_PROVIDER_ID})"
    rf"/providers/(?P<provider>{_POOL_OR_PROVIDER_ID})"
)
_PREFIXES = ("//iam.googleapis.com/", "https://iam.googleapis.com/")


@dataclass(frozen=True)
class Provider:
    project_number: str
    pool_id: str
    provider_id: str

    @property
    def name(self) -> str:
        return (
            f"projects/{self.project_number}/locations/global/"
            f"workloadIdentityPools/{self.pool_id}/providers/{self.provider_id}"
        )

    @property
    def pool_name(self) -> str:
        return f"projects/{self.project_number}/locations/global/workloadIdentityPools/{self.pool_id}"

    @property
    def audience(self) -> str:
        """The STS `audience`: the provider's full resource name."""
        return "//iam.googleapis.com/" + self.name


def provider(name: str, value: str) -> Provider:
    text = value.strip()
    for prefix in _PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix):]
            break
    match = _PROVIDER_RE.fullmatch(text)
    if match:
        return Provider(match["number"], match["pool"], match["provider"])
    raise PipeError(f"{name} is {value!r}: {_provider_hint(text)}. Expected {PROVIDER_SHAPE}.")


def _provider_hint(text: str) -> str:
    parts = text.split("/")
    if len(parts) >= 2 and parts[0] == "projects" and not parts[1].isdigit():
        return (
            f"'{parts[1]}' is a project ID, but Workload Identity Federation needs the project NUMBER "
            f"(gcloud projects describe {parts[1]} --format='value(projectNumber)')"
        )
    if re.fullmatch(r"projects/\d+/locations/global/workloadIdentityPools/[^/]+/?", text):
        return "it names a pool, not a provider: add /providers/<PROVIDER_ID>"
    if "workloadIdentityPools" not in text:
        return "it is not a workload identity provider resource name"
    return "it does not have the provider resource name's shape (IDs are 4-32 lowercase letters, digits or hyphens)"


# --- Service account and project -----------------------------------------------------------

_EMAIL_RE = re.compile(r"[a-z0-9][a-z0-9._-]*@[a-z0-9-]+(?:\.[a-z0-9-]+)+")
_SA_PROJECT_RE = re.compile(r"[^@]+@(?P<project>[a-z][a-z0-9-]{4,28}[a-z0-9])\.iam\.gserviceaccount\.com")
_PROJECT_ID_RE = re.compile(r"(?:[a-z][a-z0-9.:-]*:)?[a-z][a-z0-9-]{4,28}[a-z0-9]")


def service_account(name: str, value: str) -> str:
    text = value.strip()
    if _EMAIL_RE.fullmatch(text):
        return text
    raise bad(name, value, "a service account e-mail such as deployer@my-project.iam.gserviceaccount.com")


def project_of(service_account_email: str | None) -> str | None:
    """The project ID a user-managed service account lives in, if its e-mail says so."""
    match = _SA_PROJECT_RE.fullmatch(service_account_email or "")
    return match["project"] if match else None


def project_id(name: str, value: str) -> str:
    text = value.strip()
    if _PROJECT_ID_RE.fullmatch(text):
        return text
    raise bad(name, value, "a project ID (6-30 lowercase letters, digits or hyphens, starting with a letter)")


# --- Lists -------------------------------------------------------------------------------


def string_list(name: str, env: dict) -> list[str]:
    """A list variable: Bitbucket's NAME_COUNT/NAME_0.. form, or a comma/newline separated NAME."""
    count = env.get(f"{name}_COUNT")
    if count is not None and count.strip() != "":
        if not count.strip().isdigit():
            raise bad(f"{name}_COUNT", count, "a whole number (Bitbucket sets it for YAML lists)")
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
    return [item.strip() for item in re.split(r"[,\n]", raw) if item.strip()]


# --- Images and registries -----------------------------------------------------------------

_HOST_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"{_HOST_COMPONENT}(?:\.{_HOST_COMPONENT})*(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_IMAGE_RE = re.compile(
    rf"(?P<name>(?:(?P<host>{_HOST})/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?"
)
_HOST_RE = re.compile(_HOST)


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


def image(name: str, value: str) -> Image:
    text = value.strip()
    match = _IMAGE_RE.fullmatch(text)
    if not match or len(match["name"]) > 255:
        raise bad(name, value, "an image reference such as us-docker.pkg.dev/my-project/my-repo/builder:1.4 or …@sha256:<64 hex>")
    digest = match["digest"]
    if digest and digest.startswith("sha256:") and len(digest) != len("sha256:") + 64:
        raise bad(name, value, "an image reference whose sha256 digest has exactly 64 hex digits")
    first, _, rest = match["name"].partition("/")
    # Docker's rule: the first component is a registry host only if it looks like one.
    if rest and ("." in first or ":" in first or first == "localhost"):
        host, path = first, rest
    else:
        host, path = "docker.io", match["name"]
    return Image(host=host.lower(), repository=match["name"], path=path, tag=match["tag"], digest=digest)


def registry_host(name: str, value: str) -> str:
    text = value.strip().lower()
    for scheme in ("https://", "http://"):
        if text.startswith(scheme):
            text = text[len(scheme):]
    text = text.rstrip("/")
    if _HOST_RE.fullmatch(text):
        return text
    raise bad(name, value, "a registry host such as europe-docker.pkg.dev or registry.example.com:5000")


# --- Endpoints ---------------------------------------------------------------------------

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def endpoint(name: str, value: str) -> str:
    """An API root such as https://sts.googleapis.com. Plain http only on loopback (local emulators)."""
    text = value.strip().rstrip("/")
    parts = urlsplit(text)
    try:
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise bad(name, value, "an https:// URL such as https://sts.googleapis.com") from None
    if parts.query or parts.fragment or not parts.hostname:
        raise bad(name, value, "an https:// URL such as https://sts.googleapis.com")
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        return text
    raise bad(name, value, "an https:// URL (tokens are never sent over plain http except to localhost)")


def universe_domain(name: str, value: str) -> str:
    text = value.strip().lower()
    if re.fullmatch(rf"{_HOST_COMPONENT}(?:\.{_HOST_COMPONENT})+", text):
        return text
    raise bad(name, value, "a domain such as googleapis.com")


# --- Container settings ----------------------------------------------------------------------

_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def env_entry(name: str, item: str, environ: dict) -> tuple[str, str]:
    """NAME=VALUE, or NAME to forward the pipe's own value."""
    key, sep, value = item.partition("=")
    if not _ENV_NAME_RE.fullmatch(key):
        raise PipeError(
            f"{name} has the entry {key!r}, but each entry must be NAME=VALUE or NAME "
            "(letters, digits and underscores, not starting with a digit)."
        )
    if sep:
        return key, value
    if key not in environ:
        raise PipeError(
            f"{name} forwards {key}, but the pipe has no such variable: pass it as {key}=VALUE "
            f"or add {key}: ${key} to the pipe's variables."
        )
    return key, environ[key]


# --- Durations -------------------------------------------------------------------------------


def seconds(name: str, value: str, minimum: int, maximum: int) -> int:
    """A protobuf-style duration such as 3600s (a bare number of seconds is accepted too)."""
    text = value.strip().lower()
    match = re.fullmatch(r"(\d{1,9})s?", text)
    if not match or not minimum <= int(match[1]) <= maximum:
        raise bad(name, value, f"a number of seconds such as 3600s, between {minimum}s and {maximum}s")
    return int(match[1])
