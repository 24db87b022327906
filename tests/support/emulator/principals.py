"""Who is calling: federated identities and service accounts, and the IAM members they match.

Member strings follow Google's syntax exactly; matching is exact and case-sensitive,
as it is in IAM.
"""

from __future__ import annotations

from dataclasses import dataclass, field

IAM_HOST = "//iam.googleapis.com/"

WORKLOAD_IDENTITY_USER = "roles/iam.workloadIdentityUser"
TOKEN_CREATOR = "roles/iam.serviceAccountTokenCreator"
AR_READER = "roles/artifactregistry.reader"
AR_WRITER = "roles/artifactregistry.writer"
AR_REPO_ADMIN = "roles/artifactregistry.repoAdmin"
AR_ADMIN = "roles/artifactregistry.admin"

# Both IAM roles carry iam.serviceAccounts.getAccessToken and getOpenIdToken.
CAN_MINT_TOKENS = (WORKLOAD_IDENTITY_USER, TOKEN_CREATOR)


def principal(pool: str, subject: str) -> str:
    """One federated identity; `pool` is projects/N/locations/global/workloadIdentityPools/P."""
    return f"principal:{IAM_HOST}{pool}/subject/{subject}"


def principal_set(pool: str, attribute: str, value: str) -> str:
    """Every identity whose mapped `attribute.<attribute>` equals `value`."""
    return f"principalSet:{IAM_HOST}{pool}/attribute.{attribute}/{value}"


def principal_set_group(pool: str, group: str) -> str:
    return f"principalSet:{IAM_HOST}{pool}/group/{group}"


def all_identities(pool: str) -> str:
    return f"principalSet:{IAM_HOST}{pool}/*"


def service_account_member(email: str) -> str:
    return f"serviceAccount:{email}"


@dataclass(frozen=True)
class FederatedPrincipal:
    """The identity behind an STS token: the pool, google.subject and mapped attributes."""

    pool: str
    subject: str
    attributes: dict[str, str] = field(default_factory=dict, hash=False)
    groups: tuple[str, ...] = ()

    @property
    def project_number(self) -> str:
        return self.pool.split("/")[1]

    @property
    def id(self) -> str:
        return principal(self.pool, self.subject)

    def members(self) -> set[str]:
        found = {principal(self.pool, self.subject), all_identities(self.pool)}
        found.update(principal_set(self.pool, k, v) for k, v in self.attributes.items())
        found.update(principal_set_group(self.pool, g) for g in self.groups)
        return found


@dataclass(frozen=True)
class ServiceAccountPrincipal:
    email: str
    project_number: str
    unique_id: str

    @property
    def id(self) -> str:
        return self.email

    def members(self) -> set[str]:
        return {service_account_member(self.email)}


def holds_role(bindings: dict[str, list[str]], roles, members: set[str]) -> bool:
    return any(member in members for role in roles for member in bindings.get(role, ()))
