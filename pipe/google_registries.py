"""Registry hosts: which part of an image name is the host (Docker's rule), which hosts are Google's, and where an
image on them lives (project, location, repository). Artifact Registry serves `LOCATION-docker.pkg.dev` and, for
repositories named after the host, Container Registry's `gcr.io` family."""

import re
from dataclasses import dataclass

USERNAME = "oauth2accesstoken"  # Artifact Registry's documented user name for an OAuth access token
MULTI_REGION_HOSTS = ("us-docker.pkg.dev", "europe-docker.pkg.dev", "asia-docker.pkg.dev")
GCR_LOCATIONS = {"gcr.io": "us", "us.gcr.io": "us", "eu.gcr.io": "europe", "asia.gcr.io": "asia"}
DEFAULT_DOCKER_HOSTS = (*MULTI_REGION_HOSTS, *GCR_LOCATIONS)  # what an exported docker config covers besides IMAGE's host
_SUFFIXES = (".pkg.dev", ".gcr.io")  # *-docker.pkg.dev, *.pkg.dev, us.gcr.io, marketplace.gcr.io, …
_LOCATED = r"(?P<location>[a-z][a-z0-9-]{0,40}[a-z0-9])"
_ARTIFACT_REGISTRY_HOST = re.compile(_LOCATED + r"-docker\.pkg\.dev")
# What gcloud takes as a project (an ID, a domain-scoped ID or a number) and as a repository: text that names an
# image may hold placeholders (`<PROJECT_ID>`, `{PROJECT}`), which are no repository at all.
_PROJECT = re.compile(r"(?:[a-z][a-z0-9.-]{0,62}:)?[a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]{1,20}")
_REPOSITORY = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?")
_LOCATION = re.compile(r"[a-z][a-z0-9-]{0,40}[a-z0-9]")
# How every Google Cloud location is named: a region (us-central1, europe-west4, northamerica-northeast2, me-central2)
# or a multi-region (us, europe, asia).
_LOCATION_NAME = re.compile(r"[a-z]{2,20}-[a-z]{2,20}[0-9]{1,2}|us|europe|asia")


DOCKER_HUB = "docker.io"


def split_name(name: str) -> tuple[str, str]:
    """An image name's registry host and path, by Docker's rule (reference.splitDockerDomain): the first component is
    a host only if it has a '.' or ':', is localhost, or has upper case; otherwise the name is a path on Docker Hub."""
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        return first, rest
    return DOCKER_HUB, name


def is_google(host: str) -> bool:
    """A Google registry host. A port means it is not Google's public endpoint, which is :443 only."""
    name = host.lower()
    return ":" not in name and (name == "gcr.io" or name.endswith(_SUFFIXES))


_DOTTED_DOCKER_HOST = re.compile(_LOCATED + r"\.docker\.pkg\.dev")
_OTHER_FORMAT_HOST = re.compile(_LOCATED + r"-(?P<format>[a-z0-9]+)\.pkg\.dev")


def docker_host_problem(host: str) -> str | None:
    """Why a host in Artifact Registry's domain can serve no Docker image, or None. Its Docker repositories are at
    LOCATION-docker.pkg.dev only; the other LOCATION-FORMAT.pkg.dev hosts serve npm, Python, Maven, … packages, and
    anything else under pkg.dev (docker.pkg.dev itself) is no registry: a pull would only time out or fail to resolve."""
    name = host.lower()
    if ":" in name or not (name == "pkg.dev" or name.endswith(".pkg.dev")):
        return None
    if located := _ARTIFACT_REGISTRY_HOST.fullmatch(name):
        if _LOCATION_NAME.fullmatch(located["location"]):
            return None
        return (f"{located['location']} is no Google Cloud location, so {name} resolves nowhere: regions are named like "
                "us-central1 or europe-west4 (a word, a dash, a direction and a number), multi-regions us, europe or asia")
    if meant := likely_meant(name):
        return f"{name} is no registry host; it looks like a slip for {meant}"
    if dotted := _DOTTED_DOCKER_HOST.fullmatch(name):
        return f"{name} is no registry host; Artifact Registry's is {dotted['location']}-docker.pkg.dev (a dash, not a dot)"
    if other := _OTHER_FORMAT_HOST.fullmatch(name):
        return (f"{name} serves Artifact Registry's {other['format']} repositories, not Docker images; Docker repositories "
                f"are at {other['location']}-docker.pkg.dev")
    return (f"{name} is no registry host; Artifact Registry's Docker hosts name a location: LOCATION-docker.pkg.dev, such as "
            "us-docker.pkg.dev or europe-west1-docker.pkg.dev")


# Registry hosts people mean, for telling a slip of the keyboard from a host that is really elsewhere. A misspelt
# host may even answer: look-alike names are registered to catch exactly these slips.
WELL_KNOWN_HOSTS = (*DEFAULT_DOCKER_HOSTS, "k8s.gcr.io", DOCKER_HUB, "registry-1.docker.io", "index.docker.io", "ghcr.io",
                    "quay.io", "registry.k8s.io", "mcr.microsoft.com", "public.ecr.aws", "registry.gitlab.com", "nvcr.io")


def is_known_registry(host: str) -> bool:
    """A host that surely serves a registry (Google's, or a well-known one): a failure to reach it is the way there."""
    return is_google(host) or host.lower() in WELL_KNOWN_HOSTS


def likely_meant(host: str) -> str | None:
    """The well-known registry host (or LOCATION-docker.pkg.dev) that `host` is one slip away from: a letter missing,
    added, changed, or two letters swapped. None for a well-known host itself, or one with a port (a private registry)."""
    name = host.lower()
    if ":" in name or name in WELL_KNOWN_HOSTS or _ARTIFACT_REGISTRY_HOST.fullmatch(name):
        return None
    for known in WELL_KNOWN_HOSTS:
        if _one_slip(name, known):
            return known
    location, dash, tail = name.rpartition("-")
    if dash and _LOCATION.fullmatch(location) and _one_slip(tail, "docker.pkg.dev"):
        return f"{location}-docker.pkg.dev"
    return None


def _one_slip(typed: str, meant: str) -> bool:
    """Damerau's one edit (optimal string alignment distance 1), in one linear pass."""
    if typed == meant or abs(len(typed) - len(meant)) > 1:
        return False
    i = 0
    while i < min(len(typed), len(meant)) and typed[i] == meant[i]:
        i += 1
    return (typed[i + 1:] == meant[i + 1:] or typed[i + 1:] == meant[i:] or typed[i:] == meant[i + 1:]
            or (typed[i:i + 2] == meant[i:i + 2][::-1] and typed[i + 2:] == meant[i + 2:]))


def mistyped(host: str) -> str:
    """' (host looks like a slip for ghcr.io)', or '' when it does not."""
    meant = likely_meant(host)
    return f" ({host.lower()} looks like a slip for {meant})" if meant else ""


def is_container_registry(host: str) -> bool:
    """The legacy Container Registry family (gcr.io, us.gcr.io, …), now served by Artifact Registry."""
    name = host.lower()
    return name == "gcr.io" or name.endswith(".gcr.io")


@dataclass(frozen=True)
class Repository:
    project: str
    location: str
    repository: str

    @property
    def resource(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/repositories/{self.repository}"


def repository_of(host: str, path: str) -> Repository | None:
    """The Artifact Registry repository an image (its registry host and path) lives in; None elsewhere.

    `LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE`, or `gcr.io/PROJECT/IMAGE` in the repository named gcr.io."""
    parts = path.split("/")
    if len(parts) >= 2 and "." in parts[0]:  # a domain-scoped project: DOMAIN/PROJECT in the path, DOMAIN:PROJECT its ID
        parts = [f"{parts[0]}:{parts[1]}", *parts[2:]]
    match = _ARTIFACT_REGISTRY_HOST.fullmatch(host)
    if match and len(parts) >= 3 and is_project(parts[0]) and _REPOSITORY.fullmatch(parts[1]):
        return Repository(parts[0], match["location"], parts[1])
    if host in GCR_LOCATIONS and len(parts) >= 2 and is_project(parts[0]):
        return Repository(parts[0], GCR_LOCATIONS[host], host)
    return None


def is_repository(repository: Repository) -> bool:
    """Every part a name gcloud takes."""
    return (is_project(repository.project) and bool(_LOCATION.fullmatch(repository.location))
            and bool(_REPOSITORY.fullmatch(repository.repository)))


def is_project(text: str) -> bool:
    """A project ID or number, as gcloud's --project takes it."""
    return bool(_PROJECT.fullmatch(text))
