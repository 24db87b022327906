"""`make bench`: the pipe's size and speed, side by side with their floors, in one run on the local stack.

Prints a table and writes bench/results/latest.json (plus a timestamped copy) to compare across changes.
Wall times are medians of interleaved runs, so drift on the machine hits both sides alike.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

from bench import chart
from tests.support import harness
from tests.support.emulator import AR_READER, typical_world
from tests.support.google_tools import GCLOUD, gcloud

RUNS = int(os.environ.get("BENCH_RUNS", "11"))
IMAGE = "127.0.0.1:5000/acme-ci/private/app:1"  # busybox, ~1 MB: the pipe's fixed cost shows in full
BUILDER = "127.0.0.1:5000/acme-ci/private/builder:1"  # + a 150 MB layer of its own: a typical CI tool image
BUILDER_LAYER_MB = 150
ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
MIB = 1024 * 1024
# Docker Hub is unreachable here, so the production base (python:3.11-slim) cannot be measured: this is its
# published uncompressed size (bookworm, amd64), overridable when a real measurement is available.
PRODUCTION_BASE_BYTES = int(os.environ.get("PRODUCTION_BASE_BYTES", str(130 * 1000 * 1000)))

TARGETS = {  # name: (limit, unit, lower is better)
    "added_uncompressed_mib": 40,
    "total_with_production_base_mb": 180,
    "auth_ratio": 1.5,
    "run_ratio": 1.2,
    "peak_rss_mb": 80,
}


def gzip_size(image) -> int:
    """Bytes of `docker save | gzip -6`, streamed."""
    compressor, total = zlib.compressobj(6, zlib.DEFLATED, 31), 0
    for chunk in image.save(named=True):
        total += len(compressor.compress(chunk))
    return total + len(compressor.flush())


def timed(dc, image, **options) -> tuple[float, int, str]:
    """Start-to-exit wall time of one container (create, start, wait), its exit code and output."""
    started = time.perf_counter()
    container = dc.containers.run(image, detach=True, **options)
    code = container.wait()["StatusCode"]
    elapsed = time.perf_counter() - started
    output = container.logs().decode(errors="replace")
    container.remove(force=True)
    return elapsed, code, output


def checked(result, what):
    elapsed, code, output = result
    if code != 0:
        sys.exit(f"{what} failed ({code}):\n{output}")
    return elapsed


def builder_image(live) -> str:
    """busybox plus an incompressible layer no other local image shares, so every pull really downloads it."""
    tag = "local/bench-builder:1"
    with tempfile.TemporaryDirectory() as context:
        (Path(context) / "tool.bin").write_bytes(os.urandom(BUILDER_LAYER_MB * 1000 * 1000))
        (Path(context) / "Dockerfile").write_text(f"FROM {live.busybox}\nCOPY tool.bin /opt/tool.bin\n")
        live.dc.images.build(path=context, tag=tag, rm=True)
    return tag


def sizes(live) -> dict:
    pipe, base = live.dc.images.get(live.pipe_image), live.dc.images.get(harness.stack.base_image(live.dc))
    pipe_gz, base_gz = gzip_size(pipe), gzip_size(base)
    added = pipe.attrs["Size"] - base.attrs["Size"]
    return {
        "pipe_uncompressed_mb": pipe.attrs["Size"] / 1e6,
        "base_uncompressed_mb": base.attrs["Size"] / 1e6,
        "added_uncompressed_mib": added / MIB,
        "pipe_compressed_mb": pipe_gz / 1e6,
        "base_compressed_mb": base_gz / 1e6,
        "added_compressed_mib": (pipe_gz - base_gz) / MIB,
        "total_with_production_base_mb": (PRODUCTION_BASE_BYTES + added) / 1e6,
    }


def auth_times(live, world, clone) -> dict:
    """Four ways to get the same service-account token, interleaved: the pipe in its container (what a step runs),
    the stdlib floor on the same base, the pipe natively, and the workaround it replaces: a step running
    `gcloud auth login --cred-file` + `gcloud auth print-access-token` (natively, so gcloud's image pull is not counted)."""
    variables = {
        "WORKLOAD_IDENTITY_PROVIDER": world.labels["provider"], "SERVICE_ACCOUNT": world.labels["service_account"],
        "STS_ENDPOINT": live.emulator.url, "IAM_CREDENTIALS_ENDPOINT": live.emulator.url,
    }
    floor_script = (Path(__file__).parent / "floor_auth.py").read_text()
    times: dict[str, list[float]] = {"pipe": [], "floor": [], "native": [], "gcloud": []}

    def container(image, extra, token):
        return checked(timed(live.dc, image, **extra, **live.bitbucket_run(clone, variables, token)), image)

    sides = {
        "pipe": lambda token: container(live.pipe_image, {}, token),
        "floor": lambda token: container(harness.stack.base_image(live.dc), {"command": ["python3", "-c", floor_script]}, token),
        "native": lambda token: pipe_natively(variables, token, clone),
    }
    if GCLOUD:
        sides["gcloud"] = lambda token: gcloud_workaround(live, world, token)
    for i in range(RUNS):
        order = list(sides)[i % len(sides):] + list(sides)[:i % len(sides)]  # rotate: drift hits every side alike
        for side in order:
            times[side].append(sides[side](world.issuer().mint(world.labels["repository_uuid"])))
    median = {side: statistics.median(values) if values else None for side, values in times.items()}
    results = {"auth_pipe_s": median["pipe"], "auth_floor_s": median["floor"], "auth_ratio": median["pipe"] / median["floor"],
               "auth_native_s": median["native"], "gcloud_workaround_s": median["gcloud"]}
    if median["gcloud"]:
        results["gcloud_vs_pipe_ratio"] = median["gcloud"] / median["pipe"]
        results["gcloud_vs_native_ratio"] = median["gcloud"] / median["native"]
    return results


def pipe_natively(variables: dict, token: str, clone: Path) -> float:
    """`python -m pipe` on the host, from this checkout: the pipe's own cost without a container start."""
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "BITBUCKET_CLONE_DIR": str(clone),
           "BITBUCKET_STEP_OIDC_TOKEN": token, **variables}
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pipe"], env=env, cwd=clone, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"the pipe, run natively, failed:\n{result.stdout}{result.stderr}")
    return elapsed


def gcloud_workaround(live, world, token: str) -> float:
    """The seed workaround, timed from the token on disk to the access token printed; its token is checked
    to be one the emulator issued to the service account."""
    with tempfile.TemporaryDirectory() as work:
        directory = Path(work)
        (directory / "oidc-token").write_text(token)
        sa = world.labels["service_account"]
        (directory / "cred.json").write_text(json.dumps({
            "universe_domain": "googleapis.com", "type": "external_account", "audience": world.labels["audience"],
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "token_url": f"{live.emulator.url}/v1/token",
            "credential_source": {"file": str(directory / "oidc-token"), "format": {"type": "text"}},
            "service_account_impersonation_url": f"{live.emulator.url}/v1/projects/-/serviceAccounts/{sa}:generateAccessToken",
        }))
        started = time.perf_counter()
        login = gcloud(["auth", "login", f"--cred-file={directory / 'cred.json'}"], directory / "gcloud")
        printed = gcloud(["auth", "print-access-token"], directory / "gcloud")
        elapsed = time.perf_counter() - started
    issued = live.emulator.token_info(printed.stdout.strip())
    if login.returncode or printed.returncode or issued is None or issued.principal.email != sa:
        sys.exit(f"the gcloud workaround failed:\n{login.stderr}{printed.stderr}")
    return elapsed


def run_times(live, world, clone, image: str, key: str) -> dict:
    variables = {
        "WORKLOAD_IDENTITY_PROVIDER": world.labels["provider"], "SERVICE_ACCOUNT": world.labels["service_account"],
        "STS_ENDPOINT": live.emulator.url, "IAM_CREDENTIALS_ENDPOINT": live.emulator.url,
        "REGISTRIES": f"{harness.stack.REGISTRY},127.0.0.1:{harness.stack.EMULATOR_PORT}", "IMAGE": image, "SCRIPT": "true",
    }
    member = world.providers[0].principal_set("repository_uuid", world.labels["repository_uuid"])
    world.grant_repository(world.labels["repository"], AR_READER, member)
    pre_minted = harness.federated_token(live.emulator, world)  # the floor gets its token for free
    auth = {"username": "oauth2accesstoken", "password": pre_minted}

    def floor() -> float:
        live.forget_image(image)
        started = time.perf_counter()
        live.dc.images.pull(image, auth_config=auth)
        container = live.dc.containers.run(image, ["true"], detach=True,
                                           volumes={str(clone): {"bind": str(clone), "mode": "rw"}}, working_dir=str(clone))
        code = container.wait()["StatusCode"]
        elapsed = time.perf_counter() - started
        container.remove(force=True)
        assert code == 0
        return elapsed

    def pipe() -> float:
        live.forget_image(image)
        token = world.issuer().mint(world.labels["repository_uuid"])
        return checked(timed(live.dc, live.pipe_image, **live.bitbucket_run(clone, variables, token)), "pipe run")

    pipe_times, floor_times = [], []
    for i in range(RUNS):
        for measure, into in ((pipe, pipe_times), (floor, floor_times))[:: 1 if i % 2 == 0 else -1]:
            into.append(measure())
    pipe_s, floor_s = statistics.median(pipe_times), statistics.median(floor_times)
    return {f"{key}_pipe_s": pipe_s, f"{key}_floor_s": floor_s, f"{key}_ratio": pipe_s / floor_s}


def imports_and_memory(live, world, clone) -> dict:
    """`python -X importtime` of the entrypoint inside the image, and the pipe process's peak RSS per action."""
    _, _, output = timed(live.dc, live.pipe_image, entrypoint=["python3"],
                         command=["-X", "importtime", "-I", "-c", "import pipe.main"])
    rows = []
    for line in output.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = (part.strip() for part in line.split(":", 1)[1].split("|"))
            if cumulative.isdigit():
                rows.append((int(cumulative), name))
    rows.sort(reverse=True)
    # What bounds the auth ratio: importing only the libraries the pipe must use (toolkit, google-auth with its
    # requests transport), in the pipe image, without any of the pipe's own code.
    stack_probe = ("import time; t = time.perf_counter(); import bitbucket_pipes_toolkit, google.auth.identity_pool, "
                   "google.auth.impersonated_credentials, google.auth.transport.requests; print('T', time.perf_counter() - t)")
    stack_imports = statistics.median(
        float(timed(live.dc, live.pipe_image, entrypoint=["python3"], command=["-I", "-c", stack_probe])[2].split("T", 1)[1])
        for _ in range(5)
    )
    probe = ("import resource, subprocess, sys; subprocess.run([sys.executable, '-I', '-m', 'pipe']);"
             " print('RSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    variables = {
        "WORKLOAD_IDENTITY_PROVIDER": world.labels["provider"], "SERVICE_ACCOUNT": world.labels["service_account"],
        "STS_ENDPOINT": live.emulator.url, "IAM_CREDENTIALS_ENDPOINT": live.emulator.url,
        "REGISTRIES": f"{harness.stack.REGISTRY},127.0.0.1:{harness.stack.EMULATOR_PORT}", "IMAGE": IMAGE,
    }
    rss = {}
    for action, extra in (("auth", {"IMAGE": ""}), ("run", {"SCRIPT": "true"})):
        token = world.issuer().mint(world.labels["repository_uuid"])
        _, code, out = timed(live.dc, live.pipe_image, entrypoint=["python3"], command=["-I", "-c", probe],
                             **live.bitbucket_run(clone, {**variables, **extra}, token))
        rss[action] = int(out.rsplit("RSS", 1)[1].split()[0]) / 1024
    return {
        "import_total_ms": rows[0][0] / 1000 if rows else None,
        "required_stack_import_ms": stack_imports * 1000,
        "import_top10": [{"module": name, "cumulative_ms": us / 1000} for us, name in rows[:10]],
        "peak_rss_auth_mb": rss["auth"], "peak_rss_run_mb": rss["run"], "peak_rss_mb": max(rss.values()),
    }


def verdicts(results: dict) -> list[str]:
    lines = []
    for name, limit in TARGETS.items():
        value = results[name]
        ok = value <= limit
        margin = f"{(limit - value) / limit:.0%} under" if ok else f"MISSED by {(value - limit) / limit:.0%}"
        lines.append(f"  {'✔' if ok else '✖'} {name:<32} {value:8.2f}  (target ≤ {limit}; {margin})")
    fixed = results["auth_pipe_s"] - results["auth_floor_s"]
    lines.append(f"  The pipe's fixed cost over the floor is {fixed * 1000:.0f} ms, of which importing the required libraries "
                 f"takes {results['required_stack_import_ms']:.0f} ms.")
    return lines


def main() -> int:
    world = typical_world()
    live = harness.start(world)
    try:
        harness.push_image(live, live.busybox, IMAGE)
        source = builder_image(live)
        harness.push_image(live, source, BUILDER)
        live.forget_image(source)  # otherwise its layer stays local and pulls download nothing
        live.emulator.world = world = typical_world(repository_uuid=world.labels["repository_uuid"])
        clone = Path(tempfile.mkdtemp(prefix="bench-clone-"))
        clone.chmod(0o777)
        print(f"[bench] {RUNS} interleaved runs per side", file=sys.stderr)
        results = {"runs": RUNS, **sizes(live), **auth_times(live, world, clone),
                   **run_times(live, world, clone, BUILDER, "run"), **run_times(live, world, clone, IMAGE, "run_tiny"),
                   **imports_and_memory(live, world, clone)}
    finally:
        live.emulator.stop()

    print("\nImage (MB = 10^6 bytes, MiB = 2^20)")
    print(f"  pipe image           {results['pipe_uncompressed_mb']:8.1f} MB   compressed {results['pipe_compressed_mb']:7.1f} MB")
    print(f"  local base           {results['base_uncompressed_mb']:8.1f} MB   compressed {results['base_compressed_mb']:7.1f} MB")
    print(f"  added by the pipe    {results['added_uncompressed_mib']:8.1f} MiB  compressed {results['added_compressed_mib']:7.1f} MiB")
    print(f"  with python:3.11-slim (published {PRODUCTION_BASE_BYTES / 1e6:.0f} MB) ≈ {results['total_with_production_base_mb']:.1f} MB")
    print(f"\nAuth only, start to exit (median of {RUNS})")
    print(f"  pipe {results['auth_pipe_s']:.3f}s   stdlib floor {results['auth_floor_s']:.3f}s   ratio {results['auth_ratio']:.2f}")
    print(f"  pipe natively {results['auth_native_s']:.3f}s")
    if results["gcloud_workaround_s"]:
        print(f"  the workaround it replaces (gcloud auth login --cred-file + print-access-token, natively) "
              f"{results['gcloud_workaround_s']:.3f}s: {results['gcloud_vs_pipe_ratio']:.1f}× the pipe in its container, "
              f"{results['gcloud_vs_native_ratio']:.1f}× the pipe natively")
    else:
        print("  !!! gcloud is not installed: the workaround it replaces was NOT measured !!!")
    print(f"\nRun `true` in a private image, pull included, vs docker pull + run with a pre-minted token (median of {RUNS})")
    for key, what in (("run", f"builder image ({BUILDER_LAYER_MB} MB)"), ("run_tiny", "busybox image (1 MB)")):
        print(f"  {what:<24} pipe {results[key + '_pipe_s']:.3f}s   floor {results[key + '_floor_s']:.3f}s   "
              f"ratio {results[key + '_ratio']:.2f}")
    print(f"\nImports: `import pipe.main` {results['import_total_ms']:.0f} ms; the required libraries alone (toolkit, "
          f"google-auth and its requests transport) {results['required_stack_import_ms']:.0f} ms; top 10 (cumulative)")
    for row in results["import_top10"]:
        print(f"  {row['cumulative_ms']:7.1f} ms  {row['module']}")
    print(f"\nPeak RSS of the pipe process: auth {results['peak_rss_auth_mb']:.1f} MB, run {results['peak_rss_run_mb']:.1f} MB")
    print("\nTargets")
    for line in verdicts(results):
        print(line)

    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for path in (RESULTS / "latest.json", RESULTS / f"{stamp}.json"):
        path.write_text(json.dumps(results, indent=2))
    (RESULTS / "latest.svg").write_text(chart.render(results))
    print(f"\nResults: {RESULTS / 'latest.json'}, chart: {RESULTS / 'latest.svg'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
