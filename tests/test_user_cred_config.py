"""GOOGLE_OIDC_CONFIG_FILE: what the real gcloud writes is read exactly as google-auth reads it; everything the
pipe cannot honour is refused by name in one line; hostile files in the clone never hang, crash or leak."""

import base64
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from google.auth import identity_pool, pluggable
from hypothesis import example, given
from hypothesis import strategies as st

from pipe import config, parsers, user_cred_config
from pipe.errors import PipeError
from tests.support.budgets import CRASH_HUNT
from tests.support.figures import probe
from tests.support.google_tools import GCLOUD, gcloud
from tests.support.inputs import JSON, MAX_LINE, PROVIDER, gcloud_config, key_secrets, service_account_key, wrapped_base64

SA = "puller@my-proj.iam.gserviceaccount.com"
JWT = "urn:ietf:params:oauth:token-type:jwt"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
# create-cred-config flags for each kind of file a user may bring (gcloud 528 runs them offline).
VARIANTS = {
    "impersonation, file source, 1800 s": [f"--service-account={SA}", "--credential-source-file=/path/to/oidc.jwt",
                                           "--service-account-token-lifetime-seconds=1800"],
    "direct, file source, json format": ["--credential-source-file=/path/to/oidc.json", "--credential-source-type=json",
                                         "--credential-source-field-name=value"],
    "direct, url source, id_token, other universe": ["--credential-source-url=https://token.example/oidc", "--credential-source-headers=Metadata=1",
                                                     f"--subject-token-type={ID_TOKEN}", "--universe-domain=example-universe.goog"],
    "impersonation, executable source": [f"--service-account={SA}", "--executable-command=/usr/local/bin/print-token"],
}


def written_by_gcloud(flags: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        output = Path(directory) / "cred.json"
        result = gcloud(["iam", "workload-identity-pools", "create-cred-config", PROVIDER, *flags, f"--output-file={output}"],
                        Path(directory) / "gcloud")
        assert result.returncode == 0, result.stderr
        return json.loads(output.read_text())


@pytest.fixture(scope="module")
def gcloud_files() -> dict[str, dict]:
    if GCLOUD is None:
        pytest.skip("gcloud is not installed (reported in the figures by test_gcloud_commands)")
    with ThreadPoolExecutor(len(VARIANTS)) as pool:
        return dict(zip(VARIANTS, pool.map(written_by_gcloud, VARIANTS.values()), strict=True))


def google_auth_reading(info: dict):
    """google-auth's own reading of the same file (pluggable for executable sources, as google.auth.default picks)."""
    kind = pluggable.Credentials if "executable" in info.get("credential_source", {}) else identity_pool.Credentials
    return kind.from_info(info)


@pytest.mark.parametrize("variant", VARIANTS)
def test_what_gcloud_writes_is_read_as_google_auth_reads_it(gcloud_files, variant, tmp_path):
    """One reading: provider, token URL, impersonation URL, lifetime, universe and token type all agree."""
    info = gcloud_files[variant]
    (tmp_path / "cred.json").write_text(json.dumps(info, indent=2))
    # Another universe takes the pipe's own variable too: a committed file alone cannot send tokens outside googleapis.com.
    universe = {} if info.get("universe_domain", "googleapis.com") == "googleapis.com" else {"UNIVERSE_DOMAIN": info["universe_domain"]}
    cfg = config.load({"GOOGLE_OIDC_CONFIG_FILE": "cred.json", **universe}, tmp_path)
    theirs = google_auth_reading(info)
    assert cfg.provider.audience == theirs.info["audience"]
    assert cfg.token_url == theirs.info["token_url"]
    assert cfg.universe_domain == theirs.universe_domain
    assert cfg.subject_token_type == theirs.info["subject_token_type"]
    if theirs.service_account_email:
        assert cfg.service_account == theirs.service_account_email
        assert cfg.iam_url(cfg.service_account, "generateAccessToken") == theirs.info["service_account_impersonation_url"]
        assert cfg.lifetime == theirs.info.get("service_account_impersonation", {}).get("token_lifetime_seconds", 3600)
    else:
        assert cfg.service_account is None
        assert f"{cfg.sts_endpoint}/v1/introspect" == theirs.info["token_info_url"]


def test_gcloud_writes_what_the_tests_assume(gcloud_files):
    """tests.test_bad_input.gcloud_config, the base of every hostile file, is gcloud's own output."""
    written = gcloud_files["impersonation, file source, 1800 s"]
    assert written == {**gcloud_config(service_account_impersonation_url=written["service_account_impersonation_url"]),
                       "service_account_impersonation": {"token_lifetime_seconds": 1800}}


@pytest.mark.parametrize("form", ["path", "json", "base64", "base64 wrapped at 76", "json with a BOM", "file with a BOM and CRLF"])
def test_every_form_of_the_variable_gives_the_same_settings(tmp_path, form):
    text = json.dumps(gcloud_config(service_account_impersonation={"token_lifetime_seconds": 1800}), indent=2)
    (tmp_path / "cred.json").write_text(text)
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    value = {"path": "cred.json", "json": text, "base64": base64.b64encode(text.encode()).decode(), "base64 wrapped at 76": wrapped_base64(text),
             "json with a BOM": "\ufeff" + text, "file with a BOM and CRLF": "bom.json"}[form]
    settings = user_cred_config.load(value, tmp_path)
    assert settings.variables == {
        "WORKLOAD_IDENTITY_PROVIDER": PROVIDER, "UNIVERSE_DOMAIN": "googleapis.com", "STS_ENDPOINT": "https://sts.googleapis.com",
        "SERVICE_ACCOUNT": "deployer@my-project.iam.gserviceaccount.com", "IAM_CREDENTIALS_ENDPOINT": "https://iamcredentials.googleapis.com",
        "ACCESS_TOKEN_LIFETIME": "1800s",
    }
    assert settings.fields["SERVICE_ACCOUNT"] == "service_account_impersonation_url" and settings.subject_token_type == JWT


def test_the_config_file_supplies_the_variables_and_variables_win(tmp_path):
    cfg = config.load({"GOOGLE_OIDC_CONFIG_FILE": json.dumps(gcloud_config())}, tmp_path)
    assert (cfg.provider.name, cfg.service_account, cfg.project_id) == (PROVIDER, "deployer@my-project.iam.gserviceaccount.com", "my-project")
    cfg = config.load({"GOOGLE_OIDC_CONFIG_FILE": json.dumps(gcloud_config()), "SERVICE_ACCOUNT": SA, "STS_ENDPOINT": "http://127.0.0.1:8765"}, tmp_path)
    assert (cfg.service_account, cfg.token_url) == (SA, "http://127.0.0.1:8765/v1/token")
    assert cfg.sources["SERVICE_ACCOUNT"] == "SERVICE_ACCOUNT" and cfg.sources["IAM_CREDENTIALS_ENDPOINT"].startswith("GOOGLE_OIDC_CONFIG_FILE")


# --- every field the pipe cannot honour, refused by name -----------------------------------------------

IMPERSONATION = "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{}:generateAccessToken"
REFUSED = {
    "impersonation names a project": ({"service_account_impersonation_url": IMPERSONATION.replace("/-/", "/my-proj/").format(SA)},
                                      "Google requires projects/- there, not projects/my-proj"),
    "impersonation by unique ID": ({"service_account_impersonation_url": IMPERSONATION.format("104729384756102938475")},
                                   "service_account_impersonation_url is '104729384756102938475'"),
    "impersonation e-mail percent-encoded": ({"service_account_impersonation_url": IMPERSONATION.format(SA.replace("@", "%40"))},
                                             "a service account e-mail"),
    "impersonation of an ID token": ({"service_account_impersonation_url": IMPERSONATION.format(SA).replace("AccessToken", "IdToken")},
                                     "<root>/v1/projects/-/serviceAccounts/<SERVICE_ACCOUNT_EMAIL>:generateAccessToken"),
    "impersonation URL with a query": ({"service_account_impersonation_url": IMPERSONATION.format(SA) + "?alt=json"}, "service_account_impersonation_url"),
    "token URL trailing slash": ({"token_url": "https://sts.googleapis.com/v1/token/"}, "exactly <root>/v1/token"),
    "token URL upper-case host": ({"token_url": "https://STS.googleapis.com/v1/token"}, "the pipe would call 'https://sts.googleapis.com/v1/token'"),
    "token URL another version": ({"token_url": "https://sts.googleapis.com/v1beta/token"}, "exactly <root>/v1/token"),
    "token URL with user info": ({"token_url": "https://sts.googleapis.com@evil.example/v1/token"}, "no user name or password"),
    "introspection on another STS": ({"token_info_url": "https://sts.example.com/v1/introspect"}, "https://sts.googleapis.com/v1/introspect"),
    "lifetime without impersonation": ({"service_account_impersonation_url": None, "service_account_impersonation": {"token_lifetime_seconds": 600}},
                                       "applies only with service_account_impersonation_url"),
    "lifetime as true": ({"service_account_impersonation": {"token_lifetime_seconds": True}}, "is true, but it must be a whole number"),
    "lifetime zero": ({"service_account_impersonation": {"token_lifetime_seconds": 0}}, "from 1 to 43200"),
    "impersonation option unknown": ({"service_account_impersonation": {"delegates": ["x"]}}, "'delegates', which the pipe does not know"),
    "no audience": ({"audience": None}, "has no audience"),
    "audience of a pool": ({"audience": "//iam.googleapis.com/" + PROVIDER.split("/providers/")[0]}, "names a pool, not a provider"),
    "no subject token type": ({"subject_token_type": None}, "has no subject_token_type"),
    "AWS token type": ({"subject_token_type": "urn:ietf:params:aws:token-type:aws4_request"}, "the pipe exchanges the step's OIDC token"),
    "mTLS token type": ({"subject_token_type": "urn:ietf:params:oauth:token-type:mtls"}, "the pipe exchanges the step's OIDC token"),
    "type missing": ({"type": None}, "has type null"),
    "token URL a list": ({"token_url": ["https://sts.googleapis.com/v1/token"]}, "token_url is a list"),
    "source a string": ({"credential_source": "/path/to/oidc.jwt"}, "credential_source is a string"),
    "source without a kind": ({"credential_source": {"format": {"type": "text"}}}, "exactly one of file, url, executable or certificate"),
    "source format xml": ({"credential_source": {"file": "/t", "format": {"type": "xml"}}}, "format must be"),
    "source json without field": ({"credential_source": {"file": "/t", "format": {"type": "json"}}}, "format must be"),
    "universe with a port": ({"universe_domain": "googleapis.com:443"}, "universe_domain is 'googleapis.com:443'"),
    "quota project": ({"quota_project_id": "my-proj"}, "quota_project_id sets a quota project"),
}


@pytest.mark.parametrize("name", REFUSED)
def test_a_field_the_pipe_cannot_honour_is_refused_by_name(name):
    changes, fragment = REFUSED[name]
    with probe(f"config file: {name}"), pytest.raises(PipeError) as error:
        user_cred_config.load(json.dumps(gcloud_config(**changes)), Path("/nonexistent"))
    message = error.value.message
    assert message.startswith("GOOGLE_OIDC_CONFIG_FILE") and fragment in message, message
    assert message.isprintable() and len(message) < 1200


def test_google_auth_would_read_the_project_form_silently():
    """Why the project form is refused rather than ignored: google-auth accepts the file and calls that URL."""
    info = gcloud_config(service_account_impersonation_url=IMPERSONATION.replace("/-/", "/my-proj/").format(SA))
    assert identity_pool.Credentials.from_info(info).service_account_email == SA


def test_duplicate_fields_are_refused():
    text = '{"type": "external_account", "type": "external_account"}'
    with probe("config file: duplicate type"), pytest.raises(PipeError, match="has the field 'type' twice"):
        user_cred_config.load(text, Path("/nonexistent"))


# --- hostile files and values: one line, no hang, no echo ----------------------------------------------

def refused(value: str, directory: Path, fragment: str) -> str:
    with pytest.raises(PipeError) as error:
        user_cred_config.load(value, directory)
    message = error.value.message
    assert fragment in message and message.isprintable() and "\n" not in message, message
    return message


def test_a_fifo_in_the_clone_is_refused_without_hanging(tmp_path):
    os.mkfifo(tmp_path / "cred.json")
    with probe("config file is a FIFO"):
        refused("cred.json", tmp_path, "not a regular file")


def test_a_link_to_a_device_is_refused(tmp_path):
    (tmp_path / "cred.json").symlink_to("/dev/zero")
    with probe("config file links to /dev/zero"):
        refused("cred.json", tmp_path, "is a link")


def test_a_link_loop_is_refused(tmp_path):
    (tmp_path / "a.json").symlink_to(tmp_path / "b.json")
    (tmp_path / "b.json").symlink_to(tmp_path / "a.json")
    with probe("config file is a symlink loop"):
        refused("a.json", tmp_path, "is a link")


@pytest.fixture
def outside(tmp_path):
    """A clone, and beside it a file the repository does not own whose content would show in a refusal."""
    clone, elsewhere = tmp_path / "clone", tmp_path / "elsewhere"
    clone.mkdir()
    elsewhere.mkdir()
    (elsewhere / "app.json").write_text('{"type": "outside-secret-value-1234"}')
    return clone, elsewhere / "app.json"


@pytest.mark.parametrize("how", ["link to the file", "link to its directory", "absolute path", "../ path"])
def test_nothing_outside_the_clone_is_read(outside, how):
    """The committed config is the repository's; a link or a path to anything else is refused unread."""
    clone, secret_file = outside
    if how == "link to the file":
        (clone / "cred.json").symlink_to(secret_file)
        value = "cred.json"
    elif how == "link to its directory":
        (clone / "conf").symlink_to(secret_file.parent)
        value = "conf/app.json"
    elif how == "absolute path":
        value = str(secret_file)
    else:
        value = "../elsewhere/app.json"
    with probe(f"config file outside the clone: {how}"):
        message = refused(value, clone, "link" if how.startswith("link") else "outside the clone")
        assert "outside-secret-value" not in message


def test_a_file_in_a_subdirectory_of_the_clone_is_read_from_a_working_directory_below_it(tmp_path):
    clone = tmp_path / "clone"
    (clone / "ci" / "gcp").mkdir(parents=True)
    (clone / "ci" / "gcp" / "cred.json").write_text(json.dumps(gcloud_config()))
    settings = user_cred_config.load("gcp/cred.json", clone / "ci", clone)
    assert settings.variables["WORKLOAD_IDENTITY_PROVIDER"].endswith("/providers/bb-provider")
    assert user_cred_config.load("../ci/gcp/cred.json", clone / "ci", clone).variables == settings.variables


def test_a_home_directory_path_is_just_a_missing_file(tmp_path):
    """`~nosuchuser/…` once reached Path.expanduser, which raises RuntimeError."""
    with probe("config file ~nosuchuser"):
        refused("~nosuchuser/cred.json", tmp_path, "there is no such file")


@pytest.mark.parametrize("encoding, fragment", [("utf-16", "UTF-16"), ("utf-16-le", "UTF-16"), ("utf-16-be", "UTF-16"), ("latin-1", "not UTF-8")])
def test_other_encodings_are_refused(tmp_path, encoding, fragment):
    text = json.dumps(gcloud_config(audience="//iam.googleapis.com/" + PROVIDER + "-é"), ensure_ascii=False)
    (tmp_path / "cred.json").write_bytes(text.encode(encoding))
    with probe(f"config file in {encoding}"):
        refused("cred.json", tmp_path, fragment)


@pytest.mark.parametrize("depth", [2_000, 30_000])
def test_json_nested_thousands_deep_is_refused(tmp_path, depth):
    (tmp_path / "cred.json").write_text('{"a":' * depth + "1" + "}" * depth if depth < 10_000 else "[" * depth + "]" * depth)
    with probe(f"config file nested {depth} deep"):
        refused("cred.json", tmp_path, "nests JSON")


def test_a_huge_file_is_read_no_further_than_the_cap(tmp_path):
    with open(tmp_path / "cred.json", "wb") as handle:  # sparse: 1 GB on disk costs nothing
        handle.truncate(1 << 30)
    with probe("config file of 1 GB"):
        refused("cred.json", tmp_path, "more than 64 KB")


def test_a_key_file_in_any_form_is_refused_without_a_trace_of_the_key(tmp_path):
    key = json.dumps(service_account_key(), indent=2)
    (tmp_path / "key.json").write_text(key)
    for value in ("key.json", key, "\ufeff" + key, base64.b64encode(key.encode()).decode(), wrapped_base64(key)):
        with probe("service-account key as GOOGLE_OIDC_CONFIG_FILE"):
            message = refused(value, tmp_path, "service-account key")
            assert not any(secret in message for secret in key_secrets())


@pytest.mark.parametrize("value", ["short", "creds/cred.json", "x" * 300, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl", "QUJD\nREVG"])
def test_the_variable_is_shown_only_when_it_is_plainly_a_path(tmp_path, value):
    message = refused(value, tmp_path, "the path of a credential configuration file")
    plainly_a_path = value == "creds/cred.json"
    assert (repr(value) in message) is plainly_a_path and ("(value hidden)" in message) is not plainly_a_path


def test_what_is_not_a_configuration_says_so():
    for value, fragment in (('{"type": "external_account", "audience": 1', "not valid JSON (line 1"), ("[]", "the path of a credential"),
                            ('{"type": "impersonated_service_account"}', "type 'impersonated_service_account'"),
                            ("e30=", "has type null")):  # base64 of {}
        refused(value, Path("/nonexistent"), fragment)


def test_a_null_impersonation_url_is_no_impersonation_for_the_lifetime_either():
    changes = {"service_account_impersonation_url": None, "service_account_impersonation": {"token_lifetime_seconds": 600}}
    text = json.dumps({**gcloud_config(), **changes})  # the key kept, with a JSON null
    with probe("config file: lifetime beside a null impersonation URL"):
        refused(text, Path("/nonexistent"), "applies only with service_account_impersonation_url")


def test_numbers_in_messages_are_bounded():
    text = json.dumps(gcloud_config(service_account_impersonation={"token_lifetime_seconds": 10**4000}))
    assert len(refused(text, Path("/nonexistent"), "from 1 to 43200")) < 400


def test_thousands_of_keys_are_checked_for_duplicates():
    """The duplicate check keeps a set: thousands of keys (all a 64 KB file holds) are read, then refused by type."""
    text = json.dumps({f"k{i}": i for i in range(4000)})
    with probe("config file with 4000 keys"):
        refused(text, Path("/nonexistent"), "has type null")


# --- properties: any field values, any bytes ----------------------------------------------------

FIELDS = st.sampled_from(sorted(gcloud_config()) + ["token_info_url", "service_account_impersonation", "quota_project_id", "zzz"])


@CRASH_HUNT
@given(st.dictionaries(FIELDS, JSON, max_size=3))
@example({"service_account_impersonation": {"token_lifetime_seconds": True}})
@example({"credential_source": {"format": []}})
def test_a_config_file_with_any_field_values_is_read_or_refused_in_one_line(changes):
    text = json.dumps(gcloud_config(**changes))
    try:
        settings = user_cred_config.load(text, Path("/nonexistent"))
    except PipeError as error:
        assert error.message.startswith(user_cred_config.NAME) and error.message.isprintable() and len(error.message) < MAX_LINE
        return
    # Accepted: every value is one the variables' own parsers take unchanged.
    for variable, parse in (("WORKLOAD_IDENTITY_PROVIDER", lambda n, v: parsers.workload_identity_provider(n, v).name),
                           ("SERVICE_ACCOUNT", parsers.service_account),
                            ("STS_ENDPOINT", parsers.endpoint), ("IAM_CREDENTIALS_ENDPOINT", parsers.endpoint),
                            ("UNIVERSE_DOMAIN", parsers.universe_domain)):
        if variable in settings.variables:
            assert parse(variable, settings.variables[variable]) == settings.variables[variable]


@CRASH_HUNT
@given(st.binary(max_size=300))
def test_any_bytes_as_a_config_file_are_read_or_refused_in_one_line(tmp_path_factory, data):
    directory = tmp_path_factory.mktemp("clone")
    (directory / "cred.json").write_bytes(data)
    try:
        user_cred_config.load("cred.json", directory)
    except PipeError as error:
        assert error.message.startswith(user_cred_config.NAME) and error.message.isprintable()
