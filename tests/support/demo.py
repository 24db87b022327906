"""`make demo`: the pipe's whole main job, locally, without a Google account.

Brings up the stack (Docker daemon, registry, Google emulator), builds the pipe image from the
Dockerfile, pushes a private image, then runs the pipe as Bitbucket would: authenticate through
Workload Identity Federation with service-account impersonation, pull the private image and run a
script in it against a sample clone directory.
"""

import sys
import tempfile
from pathlib import Path

from tests.support import harness, stack
from tests.support.emulator import typical_world

IMAGE = "127.0.0.1:5000/acme-ci/private/app:1"


def stage(text: str) -> None:
    print(f"\n\x1b[1m==> {text}\x1b[0m", flush=True)


def main() -> int:
    stage("Bringing up the stack: Docker daemon, registry (token auth), Google emulator; building the pipe image")
    world = typical_world()
    live = harness.start(world)
    try:
        print(f"docker: {live.host}\nemulator: {live.emulator.url}\npipe image: {live.pipe_image}")
        stage(f"Pushing a private image to the emulated Artifact Registry: {IMAGE}")
        harness.push_image(live, live.busybox, IMAGE)
        live.emulator.world = world = typical_world(repository_uuid=world.labels["repository_uuid"])
        live.emulator.reset_log()  # what Google sees below is the pipe's alone

        clone = Path(tempfile.mkdtemp(prefix="demo-clone-"))
        clone.chmod(0o777)
        (clone / "README.txt").write_text("a sample repository\n")
        token = world.issuer().mint(world.labels["repository_uuid"])
        stage(f"Running the pipe in {clone} (step token for repository {world.labels['repository_uuid']})")
        run = live.run_pipe(clone, {
            "WORKLOAD_IDENTITY_PROVIDER": world.labels["provider"],
            "SERVICE_ACCOUNT": world.labels["service_account"],
            "IMAGE": IMAGE,
            "SCRIPT": 'echo "building in $(pwd)"; ls; echo built > artifact.txt',
            "STS_ENDPOINT": live.emulator.url,
            "IAM_CREDENTIALS_ENDPOINT": live.emulator.url,
            "REGISTRIES": f"{stack.REGISTRY},127.0.0.1:{stack.EMULATOR_PORT}",  # the registry and its token service
        }, token)
        print(run.log, end="")  # in the order the pipe wrote it, as the daemon logged it
        stage("What Google saw")
        for record in live.emulator.requests:
            print(f"{record.route:>6} {record.method} {record.path.split('?')[0]} → {record.status}")
        produced = (clone / "artifact.txt").read_text().strip() if (clone / "artifact.txt").exists() else None
        stage(f"Pipe exit code {run.exit_code}; artifact.txt in the clone: {produced!r}; tokens in the output: none")
        return 0 if run.exit_code == 0 and produced == "built" else 1
    finally:
        live.emulator.stop()


if __name__ == "__main__":
    sys.exit(main())
