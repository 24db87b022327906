"""Workload identity providers: their resource names, the STS audience, and the IAM members they define."""

import re
from dataclasses import dataclass

SHAPE = "projects/<PROJECT_NUMBER>/locations/global/workloadIdentityPools/<POOL_ID>/providers/<PROVIDER_ID>"
# Pool and provider IDs: 4-32 lowercase letters, digits or hyphens; `gcp-` is reserved for Google.
ID = r"(?!gcp-)[a-z0-9-]{4,32}"
NAME_RE = re.compile(rf"projects/(?P<number>[0-9]{{1,20}})/locations/global/workloadIdentityPools/(?P<pool>{ID})/providers/(?P<provider>{ID})")
PREFIXES = ("//iam.googleapis.com/", "https://iam.googleapis.com/")
# An OIDC audience naming a provider, in any universe (https://iam.<universe>/… or //iam.<universe>/…).
_AUDIENCE_RE = re.compile(rf"(?:https:)?//iam\.[a-z0-9.-]{{1,253}}/(?P<name>{NAME_RE.pattern})")
_LONGEST_AUDIENCE = 512  # longer than any audience _AUDIENCE_RE can match: the match never runs on unbounded text


@dataclass(frozen=True)
class Provider:
    project_number: str
    pool_id: str
    provider_id: str

    @property
    def pool_name(self) -> str:
        return f"projects/{self.project_number}/locations/global/workloadIdentityPools/{self.pool_id}"

    @property
    def name(self) -> str:
        return f"{self.pool_name}/providers/{self.provider_id}"

    @property
    def audience(self) -> str:
        """The STS `audience`: the provider's full resource name."""
        return "//iam.googleapis.com/" + self.name

    @property
    def default_oidc_audience(self) -> str:
        """The token audience a provider accepts when it lists no allowed audiences."""
        return "https://iam.googleapis.com/" + self.name

    def repository_member(self, repository_uuid: str) -> str:
        """The IAM member for one Bitbucket repository (needs attribute.repository_uuid=assertion.repositoryUuid)."""
        return f"principalSet://iam.googleapis.com/{self.pool_name}/attribute.repository_uuid/{repository_uuid}"


def parse(text: str) -> Provider | None:
    """A provider's resource name, with or without an //iam.googleapis.com/ or https://iam.googleapis.com/ prefix."""
    for prefix in PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix):]
            break
    match = NAME_RE.fullmatch(text)
    return Provider(match["number"], match["pool"], match["provider"]) if match else None


def named_by_audience(audience: str) -> Provider | None:
    """The provider an OIDC token was requested for, when its audience names one (`oidc: audiences:`)."""
    match = _AUDIENCE_RE.fullmatch(audience) if len(audience) <= _LONGEST_AUDIENCE else None
    return parse(match["name"]) if match else None
