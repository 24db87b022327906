"""Unit tests for action derivation, registry allow-listing and the variable table."""

from pathlib import Path

import pytest

from pipe import config, registry
from pipe.errors import PipeError
from pipe.parsers import image

PROVIDER = "projects/123456789012/locations/global/workloadIdentityPools/bb-pool/providers/bb-provider"
IMAGE = "us-docker.pkg.dev/my-proj/tools/builder:1.4"


def load(**env):
    return config.load({"WORKLOAD_IDENTITY_PROVIDER": PROVIDER, **env}, Path("/build"))


@pytest.mark.parametrize(
    "env, action",
    [
        ({}, "auth"),
        ({"IMAGE": IMAGE}, "pull"),
        ({"IMAGE": IMAGE, "SCRIPT": "make"}, "run"),
        ({"IMAGE": IMAGE, "COMMAND_COUNT": "1", "COMMAND_0": "make"}, "run"),
        ({"IMAGE": IMAGE, "ACTION": "run"}, "run"),
        ({"IMAGE": IMAGE, "ACTION": "AUTH"}, "auth"),
    ],
)
def test_action_is_derived_from_what_is_set(env, action):
    assert load(**env).action == action


@pytest.mark.parametrize(
    "env, message",
    [
        ({"ACTION": "pull"}, "ACTION is 'pull' but IMAGE is not set"),
        ({"ACTION": "deploy"}, "ACTION is 'deploy', but it must be one of auth, pull, run"),
        ({"IMAGE": IMAGE, "SCRIPT": "x", "COMMAND": "y"}, "SCRIPT and COMMAND are both set"),
        ({"IMAGE": IMAGE, "SCRIPT": "x", "ACTION": "pull"}, "remove ACTION"),
    ],
)
def test_contradictory_variables_are_refused(env, message):
    with pytest.raises(PipeError, match=message):
        load(**env)


def test_provider_is_required():
    with pytest.raises(PipeError, match="WORKLOAD_IDENTITY_PROVIDER is required"):
        config.load({}, Path("/build"))


def test_endpoints_follow_the_universe_and_can_be_overridden():
    cfg = load(UNIVERSE_DOMAIN="example-universe.goog")
    assert cfg.token_url == "https://sts.example-universe.goog/v1/token"
    cfg = load(STS_ENDPOINT="http://127.0.0.1:8765", IAM_CREDENTIALS_ENDPOINT="https://private.p.googleapis.com/")
    assert cfg.token_url == "http://127.0.0.1:8765/v1/token"
    assert cfg.iam_url("a@b.iam.gserviceaccount.com", "generateAccessToken") == (
        "https://private.p.googleapis.com/v1/projects/-/serviceAccounts/a@b.iam.gserviceaccount.com:generateAccessToken"
    )


def test_clone_dir_comes_from_bitbucket():
    assert load(BITBUCKET_CLONE_DIR="/opt/atlassian/pipelines/agent/build").clone_dir == Path("/opt/atlassian/pipelines/agent/build")
    assert load().clone_dir == Path("/build")


@pytest.mark.parametrize("ref", [IMAGE, "europe-west2-docker.pkg.dev/p/r/i", "gcr.io/p/i", "eu.gcr.io/p/i", "us-python.pkg.dev/p/r/i"])
def test_google_registries_are_allowed_by_default(ref):
    registry.check_allowed(image("IMAGE", ref), ())


@pytest.mark.parametrize("ref", ["ghcr.io/o/i", "alpine", "pkg.dev.evil.example/p/r/i", "evil-pkg.dev/p/i", "gcr.io.evil.example/p/i", "gcr.io:8443/p/i"])
def test_other_registries_never_receive_a_google_token(ref):
    with pytest.raises(PipeError, match="not a Google registry.*add '.*' to REGISTRIES"):
        registry.check_allowed(image("IMAGE", ref), ())


def test_registries_lists_extra_hosts():
    cfg = load(IMAGE="registry.example.com:5000/p/i:1", REGISTRIES="registry.example.com:5000")
    registry.check_allowed(cfg.image, cfg.registries)


def test_pull_without_a_docker_service_says_so_before_minting(capsys):
    import base64
    import json
    import time

    from pipe.main import main

    claims = base64.urlsafe_b64encode(json.dumps({"exp": int(time.time()) + 600}).encode()).decode().rstrip("=")
    code = main({"WORKLOAD_IDENTITY_PROVIDER": PROVIDER, "IMAGE": IMAGE, "BITBUCKET_STEP_OIDC_TOKEN": f"eyJhbGciOiJSUzI1NiJ9.{claims}.c2ln",
                 "DOCKER_HOST": "tcp://127.0.0.1:9", "STS_ENDPOINT": "http://127.0.0.1:9"})
    out = capsys.readouterr().out
    assert code == 1
    assert "add `services: [docker]` to the step" in out
    assert "Google" not in out  # refused before any token exchange
