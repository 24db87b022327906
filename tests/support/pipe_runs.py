"""What the end-to-end tests share to run the pipe: its variables against the emulator (plain daemon, and Bitbucket-like
docker service), a step token, the export folder, and images built for one test."""

from tests.support import harness

EMULATOR = "http://127.0.0.1:8765"


def variables(world, **extra):
    base = {
        "WORKLOAD_IDENTITY_PROVIDER": world.labels["provider"],
        "STS_ENDPOINT": EMULATOR,
        "IAM_CREDENTIALS_ENDPOINT": EMULATOR,
        # The local registry's token service is the emulator, another host: the pipe checks it before handing the daemon a token.
        "REGISTRIES": "127.0.0.1:5000,127.0.0.1:8765",
    }
    return {**base, **extra}


def step_token(world, **claims):
    return world.issuer().mint(world.labels["repository_uuid"], **claims)


# The pipe's storage directory as Bitbucket mounts it in the clone, and the export folder in it.
STORAGE = ".bitbucket/pipelines/generated/pipeline/pipes/keyless-gcp/google-cloud-keyless"


def exported(clone):
    return clone / STORAGE / "gcp"


def build_image(live_stack, tmp_path, dockerfile: str, name: str) -> str:
    """busybox plus the given Dockerfile lines, pushed to the private registry; its reference there."""
    context = tmp_path / f"context-{name}"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {live_stack.busybox}\n{dockerfile}\n")
    live_stack.dc.images.build(path=str(context), tag=f"local/busybox-{name}:1", rm=True)
    image = f"127.0.0.1:5000/acme-ci/private/{name}:1"
    harness.push_image(live_stack, f"local/busybox-{name}:1", image)
    return image


# --- the Bitbucket-like docker service ---

APP = "acme-ci/private/app:1"


def bitbucket_variables(bitbucket, world, **extra):
    """Impersonation through the emulator's TLS listener. REGISTRIES names the registry and its token service (the
    emulator's realm): on Google both are the registry's own host, here they are two host:ports on the bridge."""
    service = bitbucket.service
    return {
        "WORKLOAD_IDENTITY_PROVIDER": world.labels["provider"],
        "SERVICE_ACCOUNT": world.labels["service_account"],
        "STS_ENDPOINT": bitbucket.emulator_url,
        "IAM_CREDENTIALS_ENDPOINT": bitbucket.emulator_url,
        "REGISTRIES": [service.registry, f"{service.address}:{service.emulator_port}"],
        **extra,
    }
