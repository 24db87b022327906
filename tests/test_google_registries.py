"""Google's registries: which hosts are Google's, and where an image on them lives."""

import pytest

from pipe import google_registries, parsers


@pytest.mark.parametrize("image, expected", [
    ("europe-west2-docker.pkg.dev/proj-1/tools/sub/app@sha256:" + "a" * 64, ("proj-1", "europe-west2", "tools")),
    ("us-docker.pkg.dev/123456789012/tools/app:1", ("123456789012", "us", "tools")),
    ("gcr.io/acme-ci/app:1", ("acme-ci", "us", "gcr.io")),
    ("eu.gcr.io/acme-ci/app:1", ("acme-ci", "europe", "eu.gcr.io")),
    ("asia.gcr.io/example.com/acme-ci/app:1", ("example.com:acme-ci", "asia", "asia.gcr.io")),  # gcr.io/DOMAIN/PROJECT for domain-scoped
    ("us-docker.pkg.dev/p-1/tools/app:1", None),  # no project ID is 3 characters: a placeholder, not a repository
    ("us-docker.pkg.dev/my-proj/app:1", None),  # Artifact Registry paths are PROJECT/REPOSITORY/IMAGE
    ("registry.example.com/team/app:1", None),
])
def test_the_repository_an_image_lives_in(image, expected):
    parsed = parsers.image("IMAGE", image)
    found = google_registries.repository_of(parsed.host, parsed.path)
    assert (found and (found.project, found.location, found.repository)) == expected


@pytest.mark.parametrize("host, google", [
    ("us-docker.pkg.dev", True), ("europe-west2-docker.pkg.dev", True), ("gcr.io", True), ("eu.gcr.io", True),
    ("marketplace.gcr.io", True), ("us-docker.pkg.dev:443", False), ("pkg.dev.example.com", False),
    ("evil-gcr.io", False), ("gcr.io.example.com", False), ("GCR.IO", True),
])
def test_google_registries_are_google_hosts_only(host, google):
    assert google_registries.is_google(host) is google


def test_the_default_docker_hosts_are_google_registries():
    assert all(google_registries.is_google(host) for host in google_registries.DEFAULT_DOCKER_HOSTS)
    assert set(google_registries.GCR_LOCATIONS) <= set(google_registries.DEFAULT_DOCKER_HOSTS)


_LOCATIONS = ("us", "europe", "asia", "us-central1", "europe-west4", "northamerica-northeast2", "me-central2")


@pytest.mark.parametrize("location", _LOCATIONS)
def test_every_located_docker_host_is_a_registry_and_its_look_alikes_are_not(location):
    """Artifact Registry's Docker hosts are LOCATION-docker.pkg.dev; the same location written any other way under
    pkg.dev is refused, and the refusal names the host that works."""
    assert google_registries.docker_host_problem(f"{location}-docker.pkg.dev") is None
    assert google_registries.docker_host_problem(f"{location.upper()}-DOCKER.PKG.DEV") is None
    for look_alike in (f"{location}.docker.pkg.dev", f"{location}-python.pkg.dev", f"{location}-npm.pkg.dev",
                       f"{location}-maven.pkg.dev", f"{location}-apt.pkg.dev"):
        assert f"{location}-docker.pkg.dev" in google_registries.docker_host_problem(look_alike), look_alike
    for nowhere in ("docker.pkg.dev", "pkg.dev", f"docker.{location}.pkg.dev"):
        assert "LOCATION-docker.pkg.dev" in google_registries.docker_host_problem(nowhere), nowhere


@pytest.mark.parametrize("host", ["gcr.io", "k8s.gcr.io", "marketplace.gcr.io", "registry.example.com", "localhost:5000",
                                  "docker.pkg.dev:443", "pkg.dev.example.com", "docker.io", "127.0.0.1:5000"])
def test_hosts_outside_pkg_dev_or_with_a_port_are_left_to_the_registry(host):
    assert google_registries.docker_host_problem(host) is None


# --- a slip of the keyboard in a registry host ------------------------------------------------------------------------

def _slips(host: str):
    """Every host one slip away: a letter missing, added, changed, or two neighbours swapped."""
    letters = "abcdefghijklmnopqrstuvwxyz0123456789.-"
    for i in range(len(host) + 1):
        yield from (host[:i] + c + host[i:] for c in letters)
        if i < len(host):
            yield host[:i] + host[i + 1:]
            yield from (host[:i] + c + host[i + 1:] for c in letters if c != host[i])
        if i + 1 < len(host) and host[i] != host[i + 1]:
            yield host[:i] + host[i + 1] + host[i] + host[i + 2:]


@pytest.mark.parametrize("known", google_registries.WELL_KNOWN_HOSTS)
def test_every_slip_from_a_well_known_host_is_named_as_one(known):
    for typed in _slips(known):
        meant = google_registries.likely_meant(typed)
        if typed in google_registries.WELL_KNOWN_HOSTS or google_registries._ARTIFACT_REGISTRY_HOST.fullmatch(typed):
            assert meant is None, typed  # us.gcr.io is one slip from eu.gcr.io, and both are real
        else:
            assert meant is not None and (meant == known or google_registries._one_slip(typed, meant)), (typed, meant)


@pytest.mark.parametrize("location", _LOCATIONS)
def test_a_slip_in_artifact_registrys_suffix_names_the_located_host(location):
    for typed in (f"{location}-dokcer.pkg.dev", f"{location}-docker.pkg.de", f"{location}-docker.pkgdev", f"{location}-docker.pkg.dve"):
        assert google_registries.likely_meant(typed) == f"{location}-docker.pkg.dev", typed
    assert "a slip for" in (google_registries.docker_host_problem(f"{location}-dokcer.pkg.dev") or "")


@pytest.mark.parametrize("host", ["registry.example.com", "registry.internal.example.com", "harbor.acme.io", "ghcr.io",
                                  "europe-west2-docker.pkg.dev", "ghrc.io:5000", "localhost:5000", "docker.com", "gcr.dev",
                                  "k8s.io", "quay.example.com", "x" * 253])
def test_hosts_that_are_no_slip_are_left_alone(host):
    assert google_registries.likely_meant(host) is None and google_registries.mistyped(host) == ""


@pytest.mark.parametrize("location", ["us-centrall", "eu", "useast1", "us-central", "europe-west-4", "central1"])
def test_a_location_no_google_cloud_location_is_named_like_is_refused_before_any_call(location):
    assert "is no Google Cloud location" in google_registries.docker_host_problem(f"{location}-docker.pkg.dev"), location
