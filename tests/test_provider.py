"""pipe.provider: workload identity provider names, the STS audience, the IAM members, and the provider an OIDC
audience names."""

import string

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipe import provider
from pipe.provider import Provider
from tests.support.budgets import EXAMPLE_DEADLINE_MS
from tests.support.inputs import ADVERSARIAL

LIMITS = settings(max_examples=300, deadline=EXAMPLE_DEADLINE_MS)
NAME = "projects/123456789012/locations/global/workloadIdentityPools/bb-pool/providers/bb-provider"
PARSED = Provider("123456789012", "bb-pool", "bb-provider")


@pytest.mark.parametrize("text", [NAME, "//iam.googleapis.com/" + NAME, "https://iam.googleapis.com/" + NAME])
def test_the_three_accepted_forms(text):
    assert provider.parse(text) == PARSED


def test_the_names_a_provider_defines():
    assert PARSED.name == NAME
    assert PARSED.pool_name == "projects/123456789012/locations/global/workloadIdentityPools/bb-pool"
    assert PARSED.audience == "//iam.googleapis.com/" + NAME  # what STS takes: // not https:
    assert PARSED.default_oidc_audience == "https://iam.googleapis.com/" + NAME
    assert PARSED.repository_member("{0f3a9c1e-5b7d-2f4a-6c8e-0b1d3f5a7c9e}") == (
        "principalSet://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/bb-pool/"
        "attribute.repository_uuid/{0f3a9c1e-5b7d-2f4a-6c8e-0b1d3f5a7c9e}")


@pytest.mark.parametrize("text", [
    "projects/my-project/locations/global/workloadIdentityPools/bb-pool/providers/bb-provider",  # the project ID, not its number
    "projects/123456789012/locations/global/workloadIdentityPools/bb-pool",  # the pool, not the provider
    "locations/global/workforcePools/bb-pool/providers/bb-provider",  # a workforce pool
    "//iam.googleapis.com/locations/global/workforcePools/bb-pool/providers/bb-provider",
    NAME.replace("bb-pool", "gcp-pool"), NAME.replace("bb-provider", "gcp-provider"),  # gcp- is Google's
    NAME.replace("bb-pool", "abc"), NAME.replace("bb-provider", "a" * 33),  # 4 to 32 characters
    NAME.replace("bb-pool", "BB-POOL"), NAME.replace("bb-pool", "bb_pool"), NAME.replace("bb-pool", "bb.pool"),
    NAME.replace("global", "us-central1"), NAME + "/", NAME + "\n", " " + NAME, NAME.replace("/providers/", "/providers//"),
    "//iam.googleapis.com///iam.googleapis.com/" + NAME, "iam.googleapis.com/" + NAME, "http://iam.googleapis.com/" + NAME,
    "https://iam.googleapis.com//" + NAME, "//iam.googleapis.com/" + NAME.upper(), NAME.replace("123456789012", "１２３"),
    NAME.replace("123456789012", ""), "${ secrets.GCP_WORKLOAD_IDENTITY_PROVIDER }", "",
])
def test_anything_else_is_refused(text):
    assert provider.parse(text) is None


@pytest.mark.parametrize("audience, named", [
    ("https://iam.googleapis.com/" + NAME, PARSED),
    ("//iam.googleapis.com/" + NAME, PARSED),
    ("https://iam.apis-berlin-build0.goog/" + NAME, PARSED),  # another universe
    ("ari:cloud:bitbucket::workspace/0f3a9c1e-5b7d-2f4a-6c8e-0b1d3f5a7c9e", None),  # Bitbucket's default audience
    ("https://sts.googleapis.com/" + NAME, None), ("http://iam.googleapis.com/" + NAME, None), (NAME, None),
    ("https://iam.googleapis.com/" + NAME + "/", None), ("https://iam.googleapis.com/" + NAME.rsplit("/", 2)[0], None),
    ("https://iam.googleapis.com/" + NAME.replace("bb-pool", "gcp-pool"), None), ("https://your.service0.com", None), ("", None),
])
def test_the_provider_an_oidc_audience_names(audience, named):
    assert provider.named_by_audience(audience) == named


def test_a_long_audience_that_names_no_provider_names_none():
    audience = ("https://iam.googleapis.com/projects/" + "1" * 400 + "/locations/global/workloadIdentityPools/bb-pool/providers/" + "a" * 40)
    assert provider.parse(audience.removeprefix("https://iam.googleapis.com/")) is None
    assert provider.named_by_audience(audience) is None


# --- properties -------------------------------------------------------------------------------------------------------------

ID = st.text(alphabet=string.ascii_lowercase + string.digits + "-", min_size=4, max_size=32).filter(lambda s: not s.startswith("gcp-"))
NUMBER = st.integers(0, 10**19).map(str)
PREFIX = st.sampled_from(["", "//iam.googleapis.com/", "https://iam.googleapis.com/"])


@LIMITS
@given(NUMBER, ID, ID, PREFIX)
def test_every_valid_name_round_trips(number, pool, provider_id, prefix):
    name = f"projects/{number}/locations/global/workloadIdentityPools/{pool}/providers/{provider_id}"
    parsed = provider.parse(prefix + name)
    assert parsed == Provider(number, pool, provider_id)
    assert parsed.name == name and provider.parse(parsed.audience) == parsed and provider.parse(parsed.default_oidc_audience) == parsed
    assert provider.named_by_audience(parsed.default_oidc_audience) == parsed == provider.named_by_audience(parsed.audience)


FRAGMENTS = st.lists(st.sampled_from(["projects/", "123", "/locations/global/", "workloadIdentityPools/", "bb-pool", "/providers/",
                                      "bb-provider", "gcp-", "//iam.googleapis.com/", "https://iam.", "/", "-", "a", "\n"]), max_size=14).map("".join)


@LIMITS
@given(st.one_of(ADVERSARIAL, FRAGMENTS))
@example("projects/" + "1" * 60_000 + "/locations/global/workloadIdentityPools/" + "a" * 60_000)
@example("//iam." + "a" * 300_000)
def test_any_text_is_a_valid_provider_or_none(text):
    parsed = provider.parse(text)
    if parsed is not None:
        assert parsed.name in text and text.endswith(parsed.name) and provider.parse(parsed.name) == parsed
        assert parsed.project_number.isascii() and parsed.project_number.isdigit()
        for part in (parsed.pool_id, parsed.provider_id):
            assert 4 <= len(part) <= 32 and not part.startswith("gcp-") and set(part) <= set(string.ascii_lowercase + string.digits + "-")
    named = provider.named_by_audience(text[:512])
    assert named is None or text[:512].endswith(named.name)
