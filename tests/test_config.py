"""Unit tests for action derivation, registry allow-listing and the variable table."""

import json
from pathlib import Path

import pytest

from pipe import config, registry
from pipe.errors import PipeError
from pipe.parsers import image
from tests.support.figures import probe
from tests.support.inputs import gcloud_config

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


@pytest.mark.parametrize("ref", [IMAGE, "europe-west2-docker.pkg.dev/p/r/i", "asia-northeast1-docker.pkg.dev/p/r/i", "gcr.io/p/i",
                                 "eu.gcr.io/p/i", "marketplace.gcr.io/p/i"])
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


# --- where tokens go: every host outside Google is named, with who chose it ------------------------

SA = "puller@my-proj.iam.gserviceaccount.com"


def gcloud_file(**changes) -> str:
    """gcloud's create-cred-config output (see tests/test_config_file.py), as the JSON form of GOOGLE_OIDC_CONFIG_FILE."""
    return json.dumps(gcloud_config(**changes))


def test_google_hosts_and_loopback_raise_no_warning():
    for env in ({}, {"SERVICE_ACCOUNT": SA}, {"STS_ENDPOINT": "https://sts-xyz.p.googleapis.com", "SERVICE_ACCOUNT": SA},
                {"STS_ENDPOINT": "http://127.0.0.1:8765", "IAM_CREDENTIALS_ENDPOINT": "http://[::1]:8765", "SERVICE_ACCOUNT": SA},
                {"REGISTRIES": "localhost:5000,europe-docker.pkg.dev", "IMAGE": IMAGE}):
        assert config.token_destination_warnings(load(**env)) == [], env


@pytest.mark.parametrize("env, host, chooser", [
    ({"STS_ENDPOINT": "https://sts.googleapis.com.evil.example"}, "sts.googleapis.com.evil.example", "STS_ENDPOINT"),
    ({"STS_ENDPOINT": "https://evil-googleapis.com"}, "evil-googleapis.com", "STS_ENDPOINT"),
    ({"SERVICE_ACCOUNT": SA, "IAM_CREDENTIALS_ENDPOINT": "https://iam.example.com"}, "iam.example.com", "IAM_CREDENTIALS_ENDPOINT"),
])
def test_a_variable_naming_a_host_outside_google_is_warned(env, host, chooser):
    with probe(f"token to {host} by variable"):
        lines = config.token_destination_warnings(load(**env))
        assert len(lines) == 1 and host in lines[0] and f"because {chooser} says so" in lines[0] and f"unset {chooser}" in lines[0]


def test_a_universe_set_by_variable_is_the_users_choice():
    cfg = load(UNIVERSE_DOMAIN="example-universe.goog", SERVICE_ACCOUNT=SA)
    assert cfg.token_url == "https://sts.example-universe.goog/v1/token"
    assert config.token_destination_warnings(cfg) == []
    # ...but an endpoint outside both is still named
    lines = config.token_destination_warnings(load(UNIVERSE_DOMAIN="example-universe.goog", STS_ENDPOINT="https://sts.example.com"))
    assert len(lines) == 1 and "sts.example.com" in lines[0] and "outside googleapis.com and example-universe.goog" in lines[0]


@pytest.mark.parametrize("changes, host, field_name", [
    ({"token_url": "https://sts.evil.example/v1/token"}, "sts.evil.example", "token_url"),
    ({"universe_domain": "evil.example", "token_url": None}, "sts.evil.example", "universe_domain"),
    ({"service_account_impersonation_url": f"https://iam.evil.example/v1/projects/-/serviceAccounts/{SA}:generateAccessToken"},
     "iam.evil.example", "service_account_impersonation_url"),
])
def test_a_config_file_cannot_send_tokens_outside_google(changes, host, field_name):
    """A committed file is not the user's choice (anyone who can push, or an image run earlier in the step, can
    change it): a host outside googleapis.com that it chooses is refused before any token exists, naming the field."""
    with probe(f"config file sends a token to {host}"):
        with pytest.raises(PipeError) as refused:
            config.load({"GOOGLE_OIDC_CONFIG_FILE": gcloud_file(**changes)}, Path("/build"))
        message = refused.value.message
        assert message.startswith(f"GOOGLE_OIDC_CONFIG_FILE's {field_name} would send") and host in message, message


@pytest.mark.parametrize("host", ["127.0.0.1:8765", "localhost:8765"])
def test_a_config_file_cannot_send_tokens_to_loopback_either(host):
    """Loopback is where an emulator listens locally, and where a step's service container listens on Bitbucket."""
    with pytest.raises(PipeError, match="cannot choose where tokens go"):
        config.load({"GOOGLE_OIDC_CONFIG_FILE": gcloud_file(token_url=f"http://{host}/v1/token")}, Path("/build"))


def test_the_pipes_variables_take_another_universe_or_host_over_the_file():
    universe = config.load({"GOOGLE_OIDC_CONFIG_FILE": gcloud_file(universe_domain="example-universe.goog", token_url=None,
                                                                   service_account_impersonation_url=None),
                            "UNIVERSE_DOMAIN": "example-universe.goog"}, Path("/build"))
    assert universe.sts_endpoint == "https://sts.example-universe.goog"
    emulator = config.load({"GOOGLE_OIDC_CONFIG_FILE": gcloud_file(token_url="http://127.0.0.1:8765/v1/token"),
                            "STS_ENDPOINT": "http://127.0.0.1:8765", "IAM_CREDENTIALS_ENDPOINT": "http://127.0.0.1:8765"}, Path("/build"))
    assert emulator.sts_endpoint == "http://127.0.0.1:8765"


def test_registries_outside_google_are_warned():
    cfg = load(REGISTRIES="registry.example.com:5000,localhost:5000,gcr.io", IMAGE="registry.example.com:5000/p/i:1")
    lines = config.token_destination_warnings(cfg)
    assert len(lines) == 1 and "registry registry.example.com:5000" in lines[0] and "REGISTRIES" in lines[0]


def test_setup_sends_nothing_so_warns_nothing():
    assert config.token_destination_warnings(load(ACTION="setup", STS_ENDPOINT="https://sts.example.com")) == []


def test_sources_say_who_chose_each_setting():
    cfg = config.load({"GOOGLE_OIDC_CONFIG_FILE": gcloud_file(service_account_impersonation_url=None), "SERVICE_ACCOUNT": SA},
                      Path("/build"))
    assert cfg.sources == {
        "WORKLOAD_IDENTITY_PROVIDER": "GOOGLE_OIDC_CONFIG_FILE's audience",
        "SERVICE_ACCOUNT": "SERVICE_ACCOUNT",
        "UNIVERSE_DOMAIN": "GOOGLE_OIDC_CONFIG_FILE's universe_domain",
        "STS_ENDPOINT": "GOOGLE_OIDC_CONFIG_FILE's token_url",
        "IAM_CREDENTIALS_ENDPOINT": "GOOGLE_OIDC_CONFIG_FILE's universe_domain",
    }
    assert load().sources == {"WORKLOAD_IDENTITY_PROVIDER": "WORKLOAD_IDENTITY_PROVIDER"}


def test_retry_and_timeout_defaults_and_bounds():
    """RETRY_MAX_ATTEMPTS 1-10 (default 5), RETRY_MAX_TIME 1-3600 s (default 120 s), REQUEST_TIMEOUT 1-600 s (default 30 s)."""
    base = {"WORKLOAD_IDENTITY_PROVIDER": "projects/123456789012/locations/global/workloadIdentityPools/bitbucket/providers/acme"}
    cfg = config.load(base, Path("/b"))
    assert (cfg.retry_attempts, cfg.retry_max_time, cfg.request_timeout) == (5, 120, 30)
    edges = {"RETRY_MAX_ATTEMPTS": ("1", "10", "0", "11"), "RETRY_MAX_TIME": ("1s", "3600s", "0s", "3601s"),
             "REQUEST_TIMEOUT": ("1", "600s", "0", "601s")}
    fields = {"RETRY_MAX_ATTEMPTS": "retry_attempts", "RETRY_MAX_TIME": "retry_max_time", "REQUEST_TIMEOUT": "request_timeout"}
    for name, (low, high, below, above) in edges.items():
        assert getattr(config.load({**base, name: low}, Path("/b")), fields[name]) == int(low.rstrip("s"))
        assert getattr(config.load({**base, name: high}, Path("/b")), fields[name]) == int(high.rstrip("s"))
        for refused in (below, above, "ten", "5m"):
            with pytest.raises(PipeError, match=name):
                config.load({**base, name: refused}, Path("/b"))


def test_a_registries_host_one_slip_from_a_known_registry_is_named_in_its_warning_and_an_image_refusal():
    """A look-alike of a well-known registry would receive Google tokens if listed: the warning says which host it
    looks like a slip for, and so does the refusal of an IMAGE on such a host that is not listed."""
    [line] = config.token_destination_warnings(load(IMAGE="ghrc.io/o/i:1", REGISTRIES="ghrc.io"))
    assert "ghrc.io (ghrc.io looks like a slip for ghcr.io)" in line
    with pytest.raises(PipeError, match=r"IMAGE is on ghrc\.io \(ghrc\.io looks like a slip for ghcr\.io\), which is not"):
        registry.check_allowed(image("IMAGE", "ghrc.io/o/i:1"), ())
    [line] = config.token_destination_warnings(load(IMAGE="harbor.acme.io/o/i:1", REGISTRIES="harbor.acme.io"))
    assert "slip" not in line
