"""Unit tests for the variable parsers: each rule accepts what users write and names the fix for the rest."""

import pytest

from pipe import parsers
from pipe.errors import PipeError

NAME = "projects/123456789012/locations/global/workloadIdentityPools/bb-pool/providers/bb-provider"


@pytest.mark.parametrize("value", [NAME, "//iam.googleapis.com/" + NAME, "https://iam.googleapis.com/" + NAME, f"  {NAME}\n"])
def test_provider_accepts_the_resource_name_and_its_prefixed_forms(value):
    provider = parsers.provider("WORKLOAD_IDENTITY_PROVIDER", value)
    assert provider == parsers.Provider("123456789012", "bb-pool", "bb-provider")
    assert provider.audience == "//iam.googleapis.com/" + NAME


@pytest.mark.parametrize(
    "value, hint",
    [
        ("projects/my-proj/locations/global/workloadIdentityPools/bb-pool/providers/bb-provider", "project NUMBER"),
        ("projects/123/locations/global/workloadIdentityPools/bb-pool", "names a pool, not a provider"),
        ("my-pool/my-provider", "not a workload identity provider"),
        ("projects/123/locations/global/workloadIdentityPools/BB/providers/x", "shape"),
    ],
)
def test_provider_rejects_other_shapes_with_the_expected_one(value, hint):
    with pytest.raises(PipeError) as error:
        parsers.provider("WORKLOAD_IDENTITY_PROVIDER", value)
    assert hint in error.value.message
    assert parsers.PROVIDER_SHAPE in error.value.message


@pytest.mark.parametrize(
    "value, host, repository, tag, digest",
    [
        ("us-docker.pkg.dev/p/r/builder:1.4", "us-docker.pkg.dev", "us-docker.pkg.dev/p/r/builder", "1.4", None),
        ("europe-west2-docker.pkg.dev/p/r/a/b", "europe-west2-docker.pkg.dev", "europe-west2-docker.pkg.dev/p/r/a/b", None, None),
        ("gcr.io/p/img@sha256:" + "a" * 64, "gcr.io", "gcr.io/p/img", None, "sha256:" + "a" * 64),
        ("127.0.0.1:5000/p/r/i:t", "127.0.0.1:5000", "127.0.0.1:5000/p/r/i", "t", None),
        ("alpine", "docker.io", "alpine", None, None),
        ("library/alpine:3", "docker.io", "library/alpine", "3", None),
    ],
)
def test_image_reference_grammar(value, host, repository, tag, digest):
    image = parsers.image("IMAGE", value)
    assert (image.host, image.repository, image.tag, image.digest) == (host, repository, tag, digest)


def test_image_reference_defaults_to_latest_and_keeps_digests():
    assert parsers.image("IMAGE", "us-docker.pkg.dev/p/r/i").reference == "us-docker.pkg.dev/p/r/i:latest"
    digest = "sha256:" + "b" * 64
    assert parsers.image("IMAGE", f"us-docker.pkg.dev/p/r/i@{digest}").reference == f"us-docker.pkg.dev/p/r/i@{digest}"


@pytest.mark.parametrize("value", ["US-docker.pkg.dev/P/r/i", "img:", "a//b", "x@sha256:abc", "gcr.io/p/i@sha256:" + "a" * 63, ""])
def test_image_rejects_invalid_references(value):
    with pytest.raises(PipeError, match="IMAGE is .* but it must be an image reference"):
        parsers.image("IMAGE", value)


def test_lists_in_bitbucket_array_form_and_as_plain_strings():
    env = {"COMMAND_COUNT": "3", "COMMAND_0": "--description", "COMMAND_1": "text with spaces", "COMMAND_2": "-v"}
    assert parsers.string_list("COMMAND", env) == ["--description", "text with spaces", "-v"]
    assert parsers.string_list("REGISTRIES", {"REGISTRIES": "a.example, b.example\nc.example"}) == ["a.example", "b.example", "c.example"]
    assert parsers.string_list("REGISTRIES", {}) == []


def test_list_with_a_missing_item_or_bad_count_is_explained():
    with pytest.raises(PipeError, match="ENV_COUNT is 2 but ENV_1 is missing"):
        parsers.string_list("ENV", {"ENV_COUNT": "2", "ENV_0": "A=1"})
    with pytest.raises(PipeError, match="ENV_COUNT is 'two'"):
        parsers.string_list("ENV", {"ENV_COUNT": "two"})


@pytest.mark.parametrize("value, expected", [("true", True), ("True", True), ("yes", True), ("1", True), ("false", False), ("No", False), ("0", False)])
def test_booleans_accept_what_bitbucket_users_write(value, expected):
    assert parsers.boolean("DEBUG", value) is expected


def test_boolean_rejects_other_words():
    with pytest.raises(PipeError, match="DEBUG is 'maybe', but it must be 'true' or 'false'"):
        parsers.boolean("DEBUG", "maybe")


def test_endpoints_require_https_except_on_loopback():
    assert parsers.endpoint("STS_ENDPOINT", "https://sts.googleapis.com/") == "https://sts.googleapis.com"
    assert parsers.endpoint("STS_ENDPOINT", "http://127.0.0.1:8765") == "http://127.0.0.1:8765"
    with pytest.raises(PipeError, match="https://"):
        parsers.endpoint("STS_ENDPOINT", "http://sts.example.com")
    with pytest.raises(PipeError):
        parsers.endpoint("STS_ENDPOINT", "https://host:notaport")


def test_env_entries_set_or_forward_values():
    assert parsers.env_entry("ENV", "A=b=c", {}) == ("A", "b=c")
    assert parsers.env_entry("ENV", "BITBUCKET_BRANCH", {"BITBUCKET_BRANCH": "main"}) == ("BITBUCKET_BRANCH", "main")
    with pytest.raises(PipeError, match="forwards MISSING"):
        parsers.env_entry("ENV", "MISSING", {})
    with pytest.raises(PipeError, match="'1BAD'"):
        parsers.env_entry("ENV", "1BAD=x", {})


def test_service_account_and_its_project():
    assert parsers.service_account("SERVICE_ACCOUNT", "puller@my-proj.iam.gserviceaccount.com") == "puller@my-proj.iam.gserviceaccount.com"
    assert parsers.project_of("puller@my-proj.iam.gserviceaccount.com") == "my-proj"
    assert parsers.project_of("123-compute@developer.gserviceaccount.com") is None
    with pytest.raises(PipeError, match="service account e-mail"):
        parsers.service_account("SERVICE_ACCOUNT", "puller")


def test_durations():
    assert parsers.seconds("ACCESS_TOKEN_LIFETIME", "3600s", 1, 43200) == 3600
    assert parsers.seconds("ACCESS_TOKEN_LIFETIME", "600", 1, 43200) == 600
    for value in ("0s", "43201s", "1h", "-5s"):
        with pytest.raises(PipeError, match="between 1s and 43200s"):
            parsers.seconds("ACCESS_TOKEN_LIFETIME", value, 1, 43200)
