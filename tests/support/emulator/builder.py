"""A typical world in one call; tests then mutate it for their case."""

from __future__ import annotations

from .principals import AR_READER, WORKLOAD_IDENTITY_USER
from .world import Issuer, Provider, ServiceAccount, World, braced, new_uuid


def repository_resource(project: str, location: str, repository: str) -> str:
    return f"projects/{project}/locations/{location}/repositories/{repository}"


def typical_world(
    *,
    workspace_slug: str = "acme",
    repository_uuid: str | None = None,
    project_number: str = "123456789012",
    project_id: str = "acme-ci",
    pool_id: str = "bitbucket",
    provider_id: str = "acme",
    service_account_id: str = "image-puller",
    registry_host: str = "127.0.0.1:5000",
    location: str = "us",
    repository: str = "private",
    image: str = "app",
) -> World:
    """One workspace issuer, one provider admitting one repository, one SA, one AR repository.

    - the provider trusts the issuer, accepts Bitbucket's default workspace audience, maps
      google.subject=assertion.sub plus repository_uuid/workspace_uuid/branch attributes, and
      its condition admits only `repository_uuid`;
    - the SA grants roles/iam.workloadIdentityUser to that repository's principalSet;
    - the SA has roles/artifactregistry.reader on the AR repository.
    `world.labels` names the pieces (repository_uuid, audience, service_account, image, ...).
    """
    repo_uuid = braced(repository_uuid or new_uuid())
    issuer = Issuer(workspace_slug)
    provider = Provider(
        project_number=project_number,
        pool_id=pool_id,
        provider_id=provider_id,
        issuer_uri=issuer.iss,
        allowed_audiences=[issuer.default_audience],
        attribute_mapping={
            "google.subject": "assertion.sub",
            "attribute.repository_uuid": "assertion.repositoryUuid",
            "attribute.workspace_uuid": "assertion.workspaceUuid",
            "attribute.branch": "assertion.branchName",
        },
        attribute_condition=f'assertion.repositoryUuid == "{repo_uuid}"',
    )
    sa = ServiceAccount(f"{service_account_id}@{project_id}.iam.gserviceaccount.com", project_number)
    sa.grant(WORKLOAD_IDENTITY_USER, provider.principal_set("repository_uuid", repo_uuid))
    resource = repository_resource(project_id, location, repository)
    world = World(
        issuers=[issuer],
        providers=[provider],
        service_accounts=[sa],
        registry_hosts={registry_host: location},
    )
    world.grant_repository(resource, AR_READER, sa.member)
    world.labels.update(
        {
            "workspace_slug": workspace_slug,
            "repository_uuid": repo_uuid,
            "audience": provider.audience,
            "provider": provider.name,
            "service_account": sa.email,
            "repository": resource,
            "image": f"{registry_host}/{project_id}/{repository}/{image}",
        }
    )
    return world
