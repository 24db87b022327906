"""A strict emulator of Google's endpoints used by the pipe: STS token exchange, IAM
Credentials, the Artifact Registry docker token realm, plus Bitbucket's OIDC issuer.

    from tests.support.emulator import Emulator, typical_world

    world = typical_world()
    with Emulator(world) as emu:
        token = world.issuer().mint(world.labels["repository_uuid"])
        ...  # point token_url at emu.url + "/v1/token"
"""

from .builder import repository_resource, typical_world
from .keys import ensure_registry_signing_material, libtrust_kid
from .principals import (
    AR_READER,
    AR_REPO_ADMIN,
    AR_WRITER,
    TOKEN_CREATOR,
    WORKLOAD_IDENTITY_USER,
    FederatedPrincipal,
    ServiceAccountPrincipal,
)
from .server import Emulator, RequestRecord
from .tokens import CLOUD_PLATFORM, CLOUD_PLATFORM_READ_ONLY, IAM_SCOPE, AccessToken
from .world import Issuer, Provider, ServiceAccount, World

__all__ = [
    "AR_READER",
    "AR_REPO_ADMIN",
    "AR_WRITER",
    "CLOUD_PLATFORM",
    "CLOUD_PLATFORM_READ_ONLY",
    "IAM_SCOPE",
    "TOKEN_CREATOR",
    "WORKLOAD_IDENTITY_USER",
    "AccessToken",
    "Emulator",
    "FederatedPrincipal",
    "Issuer",
    "Provider",
    "RequestRecord",
    "ServiceAccount",
    "ServiceAccountPrincipal",
    "World",
    "ensure_registry_signing_material",
    "libtrust_kid",
    "repository_resource",
    "typical_world",
]
