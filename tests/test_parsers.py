"""Unit tests for the variable parsers: each rule accepts what users write and names the fix for the rest."""

import base64
import string
import time

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipe import parsers, provider, service_accounts, shown, untrusted, urls
from pipe.errors import PipeError
from tests.support.budgets import CRASH_HUNT
from tests.support.figures import probe
from tests.support.inputs import MAX_LINE, TEXT, jwt

NAME = "projects/123456789012/locations/global/workloadIdentityPools/bb-pool/providers/bb-provider"


@pytest.mark.parametrize("value", [NAME, "//iam.googleapis.com/" + NAME, "https://iam.googleapis.com/" + NAME, f"  {NAME}\n"])
def test_provider_accepts_the_resource_name_and_its_prefixed_forms(value):
    provider = parsers.workload_identity_provider("WORKLOAD_IDENTITY_PROVIDER", value)
    assert provider == parsers.Provider("123456789012", "bb-pool", "bb-provider")
    assert provider.audience == "//iam.googleapis.com/" + NAME


@pytest.mark.parametrize(
    "value, hint",
    [
        ("projects/my-proj/locations/global/workloadIdentityPools/bb-pool/providers/bb-provider", "project NUMBER"),
        ("projects/123/locations/global/workloadIdentityPools/bb-pool", "names a pool, not a provider"),
        ("my-pool/my-provider", "not a workload identity provider"),
        ("projects/123/locations/global/workloadIdentityPools/BB/providers/x", "shape"),
    ],
)
def test_provider_rejects_other_shapes_with_the_expected_one(value, hint):
    with pytest.raises(PipeError) as error:
        parsers.workload_identity_provider("WORKLOAD_IDENTITY_PROVIDER", value)
    assert hint in error.value.message
    assert provider.SHAPE in error.value.message


@pytest.mark.parametrize(
    "value, host, repository, tag, digest",
    [
        ("us-docker.pkg.dev/p/r/builder:1.4", "us-docker.pkg.dev", "us-docker.pkg.dev/p/r/builder", "1.4", None),
        ("europe-west2-docker.pkg.dev/p/r/a/b", "europe-west2-docker.pkg.dev", "europe-west2-docker.pkg.dev/p/r/a/b", None, None),
        ("gcr.io/p/img@sha256:" + "a" * 64, "gcr.io", "gcr.io/p/img", None, "sha256:" + "a" * 64),
        ("127.0.0.1:5000/p/r/i:t", "127.0.0.1:5000", "127.0.0.1:5000/p/r/i", "t", None),
        ("alpine", "docker.io", "alpine", None, None),
        ("library/alpine:3", "docker.io", "library/alpine", "3", None),
    ],
)
def test_image_reference_grammar(value, host, repository, tag, digest):
    image = parsers.image("IMAGE", value)
    assert (image.host, image.repository, image.tag, image.digest) == (host, repository, tag, digest)


def test_image_reference_defaults_to_latest_and_keeps_digests():
    assert parsers.image("IMAGE", "us-docker.pkg.dev/p/r/i").reference == "us-docker.pkg.dev/p/r/i:latest"
    digest = "sha256:" + "b" * 64
    assert parsers.image("IMAGE", f"us-docker.pkg.dev/p/r/i@{digest}").reference == f"us-docker.pkg.dev/p/r/i@{digest}"


@pytest.mark.parametrize("value", ["US-docker.pkg.dev/P/r/i", "img:", "a//b", "x@sha256:abc", "gcr.io/p/i@sha256:" + "a" * 63, ""])
def test_image_rejects_invalid_references(value):
    with pytest.raises(PipeError, match="IMAGE is .* but it must be an image reference"):
        parsers.image("IMAGE", value)


def test_lists_in_bitbucket_array_form_and_as_plain_strings():
    env = {"COMMAND_COUNT": "3", "COMMAND_0": "--description", "COMMAND_1": "text with spaces", "COMMAND_2": "-v"}
    assert parsers.string_list("COMMAND", env) == ["--description", "text with spaces", "-v"]
    assert parsers.string_list("REGISTRIES", {"REGISTRIES": "a.example, b.example\nc.example"}) == ["a.example", "b.example", "c.example"]
    assert parsers.string_list("REGISTRIES", {}) == []


def test_list_with_a_missing_item_or_bad_count_is_explained():
    with pytest.raises(PipeError, match="ENV_COUNT is 2 but ENV_1 is missing"):
        parsers.string_list("ENV", {"ENV_COUNT": "2", "ENV_0": "A=1"})
    with pytest.raises(PipeError, match="ENV_COUNT is 'two'"):
        parsers.string_list("ENV", {"ENV_COUNT": "two"})


@pytest.mark.parametrize("value, expected", [("true", True), ("True", True), ("yes", True), ("1", True), ("false", False), ("No", False), ("0", False)])
def test_booleans_accept_what_bitbucket_users_write(value, expected):
    assert parsers.boolean("DEBUG", value) is expected


def test_boolean_rejects_other_words():
    with pytest.raises(PipeError, match="DEBUG is 'maybe', but it must be 'true' or 'false'"):
        parsers.boolean("DEBUG", "maybe")


def test_endpoints_require_https_except_on_loopback():
    assert parsers.endpoint("STS_ENDPOINT", "https://sts.googleapis.com/") == "https://sts.googleapis.com"
    assert parsers.endpoint("STS_ENDPOINT", "http://127.0.0.1:8765") == "http://127.0.0.1:8765"
    with pytest.raises(PipeError, match="https://"):
        parsers.endpoint("STS_ENDPOINT", "http://sts.example.com")
    with pytest.raises(PipeError):
        parsers.endpoint("STS_ENDPOINT", "https://host:notaport")


def test_env_entries_set_or_forward_values():
    assert parsers.env_entry("ENV", "A=b=c", {}) == ("A", "b=c")
    assert parsers.env_entry("ENV", "BITBUCKET_BRANCH", {"BITBUCKET_BRANCH": "main"}) == ("BITBUCKET_BRANCH", "main")
    with pytest.raises(PipeError, match="forwards MISSING"):
        parsers.env_entry("ENV", "MISSING", {})
    with pytest.raises(PipeError, match="'1BAD'"):
        parsers.env_entry("ENV", "1BAD=x", {})


def test_service_account_and_its_project():
    assert parsers.service_account("SERVICE_ACCOUNT", "puller@my-proj.iam.gserviceaccount.com") == "puller@my-proj.iam.gserviceaccount.com"
    assert service_accounts.project_id("puller@my-proj.iam.gserviceaccount.com") == "my-proj"
    assert service_accounts.project_id("123-compute@developer.gserviceaccount.com") is None
    with pytest.raises(PipeError, match="service account e-mail"):
        parsers.service_account("SERVICE_ACCOUNT", "puller")


def test_durations():
    assert parsers.seconds("ACCESS_TOKEN_LIFETIME", "3600s", 1, 43200) == 3600
    assert parsers.seconds("ACCESS_TOKEN_LIFETIME", "600", 1, 43200) == 600
    for value in ("0s", "43201s", "1h", "-5s"):
        with pytest.raises(PipeError, match="between 1s and 43200s"):
            parsers.seconds("ACCESS_TOKEN_LIFETIME", value, 1, 43200)


# --- echoing values: bounded, one line, never a secret -----------------------------------------------

def test_echo_quotes_short_values_and_escapes_control_characters():
    assert shown.echo("deploy") == "'deploy'"
    assert shown.echo("a\nb\x1b[31m\u202e") == "'a\\nb\\x1b[31m\\u202e'"


def test_echo_shows_the_first_80_characters_of_a_long_value():
    with probe("100 KB value echoed"):
        echoed = shown.echo("a" * 100_000)
        assert echoed == repr("a" * 80) + "… (100000 characters)"


@pytest.mark.parametrize("secret", [
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----",
    '{"type": "service_account", "private_key": "x"}',
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj",  # a base64 run mixing cases and digits
    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
    "ya29.a0AfH6SMBx3kq-secret",
    "https://robot:hunter2@registry.example.com",
    "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 client_secret",
])
def test_key_and_token_shapes_are_hidden(secret):
    with probe(f"secret shape {secret[:12]!r} echoed"):
        message = parsers.bad("SERVICE_ACCOUNT", secret, "a service account e-mail").message
        assert message.startswith("SERVICE_ACCOUNT is (hidden), but")


@pytest.mark.parametrize("value", [
    "projects/123456789012/locations/global/workloadIdentityPools/bb-pool/providers/bb-provider",
    "us-docker.pkg.dev/my-project/tools/builder@sha256:" + "4f1c2a9e0b7d3c5e" * 4,
    "Deployer@my-project.iam.gserviceaccount.com",
])
def test_names_paths_and_digests_are_not_mistaken_for_secrets(value):
    assert not shown.looks_secret(value)


def test_printable_escapes_and_bounds():
    assert shown.clipped("ok\x1b[2J", 80) == "ok\\x1b[2J"
    assert shown.clipped("x" * 300, 256) == "x" * 256 + "…"


# --- lists, URLs, hosts and audiences ------------------------------------------------------------------

@pytest.mark.parametrize("count", ["9" * 5000, "1001", "00001001"])
def test_list_counts_are_bounded_without_int_errors(count):
    with probe(f"_COUNT of {len(count)} digits"), pytest.raises(PipeError, match=r"ENV_COUNT is .*from 0 to 1000"):
        parsers.string_list("ENV", {"ENV_COUNT": count})


def test_lists_in_one_string_are_bounded_too():
    assert len(parsers.string_list("ENV", {"ENV": "\n".join(["A=1"] * 1000)})) == 1000
    with pytest.raises(PipeError, match="ENV has 1001 items"):
        parsers.string_list("ENV", {"ENV": "\n".join(["A=1"] * 1001)})
    with pytest.raises(PipeError, match="REGISTRIES has 1001 items"):
        parsers.string_list("REGISTRIES", {"REGISTRIES": ",".join(["r.example"] * 1001)})


@pytest.mark.parametrize("name", parsers.LINES_ONLY)
def test_values_with_commas_stay_whole_where_values_hold_commas(name):
    """ENV: "URLS=a,b" and COMMAND: "--only=a,b" are one item each; a line break separates items."""
    assert parsers.string_list(name, {name: "URLS=a,b"}) == ["URLS=a,b"]
    assert parsers.string_list(name, {name: "A=1,2\nB=3"}) == ["A=1,2", "B=3"]


def test_registries_scopes_and_delegates_split_on_commas():
    for name in ("REGISTRIES", "ACCESS_TOKEN_SCOPES", "DELEGATES"):
        assert parsers.string_list(name, {name: "a, b\nc"}) == ["a", "b", "c"]


@pytest.mark.parametrize("value, why", [
    ("https://sts.googleapis.com\\@evil.example", "no backslashes"),
    ("https://evil.example\\.sts.googleapis.com", "no backslashes"),
    ("https://user:pw@sts.googleapis.com", "no user name or password"),
    ("https://sts.googleapis.com#frag", "no query or fragment"),
    ("https://stś.googleapis.com", "ASCII only"),
    ("http://127.1:8765", None),  # IPv4 shorthand: 127.0.0.1 to some readers, a name to others
    ("https://sts.googleapis.com/a/../b", None),
    ("https://sts.googleapis.com/%2e%2e", None),
    ("ftp://sts.googleapis.com", "https://"),
    ("http://sts.example.com", "plain http"),
])
def test_endpoints_take_only_what_every_client_reads_alike(value, why):
    with probe(f"endpoint {value}"), pytest.raises(PipeError) as error:
        parsers.endpoint("STS_ENDPOINT", value)
    assert parsers.ENDPOINT_FORM in error.value.message
    if why:
        assert why in error.value.message


@pytest.mark.parametrize("value, kept", [
    ("HTTPS://STS.googleapis.com/", "https://sts.googleapis.com"),
    ("http://127.0.0.2:8765", "http://127.0.0.2:8765"),  # all of 127/8 is loopback
    ("http://[::1]:8765/private/sts", "http://[::1]:8765/private/sts"),
    ("https://sts-xyz.p.googleapis.com", "https://sts-xyz.p.googleapis.com"),
])
def test_endpoints_that_are_kept(value, kept):
    assert parsers.endpoint("STS_ENDPOINT", value) == kept


@pytest.mark.parametrize("value", ["127.1:5000", "registry.example.com.", "gcr.io@evil.example", "REGISTRY.example.com:0500",
                                   "registry.example.com:99999", "registry.example.com/path", "xn--bcher-kva.example\\x"])
def test_registry_hosts_are_exact_netlocs(value):
    with probe(f"registry {value}"), pytest.raises(PipeError, match="a registry host such as"):
        parsers.registry_host("REGISTRIES", value)


@pytest.mark.parametrize("value, kept", [("https://Registry.Example.com:5000/", "registry.example.com:5000"), ("[::1]:5000", "[::1]:5000"),
                                         ("localhost:5000", "localhost:5000")])
def test_registry_hosts_that_are_kept(value, kept):
    assert parsers.registry_host("REGISTRIES", value) == kept


@pytest.mark.parametrize("value, kept", [
    ("https://my-service-abc123-uc.a.run.app", "https://my-service-abc123-uc.a.run.app"),
    ("https://us-central1-my-project.cloudfunctions.net/hello", "https://us-central1-my-project.cloudfunctions.net/hello"),
    ("123456789012-abc123def456.apps.googleusercontent.com", "123456789012-abc123def456.apps.googleusercontent.com"),
])
def test_id_token_audiences_that_are_kept(value, kept):
    assert parsers.id_token_audience("ID_TOKEN_AUDIENCE", value) == kept


@pytest.mark.parametrize("value", ["https://x.run.app\n\x1b[32m✔ The script succeeded.", "my-service", "https://" + "a" * 1100 + ".run.app",
                                   "123-ABC.apps.googleusercontent.com", "https://x.run.app#frag"])
def test_id_token_audiences_that_are_refused(value):
    with probe(f"ID_TOKEN_AUDIENCE {value[:20]!r}"), pytest.raises(PipeError, match="ID_TOKEN_AUDIENCE is .*Cloud Run") as error:
        parsers.id_token_audience("ID_TOKEN_AUDIENCE", value)
    assert error.value.message.isprintable()


@pytest.mark.parametrize("value", ["10.0.0.1", "googleapis", "a.0", "-x.example", "x_y.example", "https://googleapis.com"])
def test_universe_domains_are_names_pipe_urls_reads(value):
    with pytest.raises(PipeError, match="UNIVERSE_DOMAIN is .*a domain"):
        parsers.universe_domain("UNIVERSE_DOMAIN", value)


def test_env_names_that_could_be_secrets_are_not_repeated():
    name = "A" * 200
    with pytest.raises(PipeError) as error:
        parsers.env_entry("ENV", name, {})
    assert name[:81] not in error.value.message and "pass it as NAME=VALUE" in error.value.message


HOSTILE = {"run": "a" * 100_000, "dashes": "a-" * 50_000 + "!", "dots": "a." * 50_000 + "!", "slashes": "a/" * 50_000 + "!",
           "scheme": "https://" + "a." * 50_000, "schemes": "a://" * 30_000, "digits": "1" * 100_000, "colons": "a:" * 50_000}
PARSERS = [("WORKLOAD_IDENTITY_PROVIDER", parsers.workload_identity_provider), ("SERVICE_ACCOUNT", parsers.service_account), ("PROJECT_ID", parsers.project_id),
           ("IMAGE", parsers.image), ("REGISTRIES", parsers.registry_host), ("STS_ENDPOINT", parsers.endpoint),
           ("UNIVERSE_DOMAIN", parsers.universe_domain), ("ACCESS_TOKEN_SCOPES", parsers.scope), ("REQUEST_REASON", parsers.header_value),
           ("ID_TOKEN_AUDIENCE", parsers.id_token_audience), ("DEBUG", parsers.boolean)]


@pytest.mark.parametrize("shape", HOSTILE)
def test_100_kb_values_are_refused_quickly_in_one_bounded_line(shape):
    """No rule backtracks on long input (an echo check once took 17 s on 100 KB)."""
    with probe(f"100 KB {shape} value"):
        for name, parse in PARSERS:
            started = time.monotonic()
            with pytest.raises(PipeError) as error:
                parse(name, HOSTILE[shape])
            assert time.monotonic() - started < 1, name
            assert error.value.message.isprintable() and len(error.value.message) < 1200


@pytest.mark.parametrize("text", ['"\\' * 30_000, '"' * 65_536, '"' + "a" * 65_536, "[" * 65_536, '{"a":' * 13_000])
def test_json_depth_is_linear_on_hostile_text(text):
    """The depth check stands in front of json.loads for config files and token payloads: it must not backtrack."""
    with probe(f"json depth of {text[:6]!r}…"):
        started = time.monotonic()
        untrusted.json_depth(text)
        assert time.monotonic() - started < 1


# === properties: any text gives a value or a one-line PipeError, and valid values round-trip ===

ROUND_TRIP = settings(max_examples=150, deadline=None)  # generated valid values: fewer suffice

# Valid pieces, built from parts (st.from_regex is several times slower).
LOWER_ALNUM = string.ascii_lowercase + string.digits


def word(first: str, middle: str, last: str, min_middle: int, max_middle: int):
    """first char + middle chars + last char."""
    return st.builds(
        lambda a, m, z: a + m + z,
        st.sampled_from(first), st.text(alphabet=middle, min_size=min_middle, max_size=max_middle), st.sampled_from(last),
    )


ID = st.text(alphabet=LOWER_ALNUM + "-", min_size=4, max_size=32).filter(lambda s: not s.startswith("gcp-"))
NUMBER = st.integers(0, 10**19).map(str)
ALNUM = st.text(alphabet=LOWER_ALNUM, min_size=1, max_size=8)
PATH_COMPONENT = st.builds(
    lambda first, rest: first + "".join(sep + part for sep, part in rest),
    ALNUM, st.lists(st.tuples(st.sampled_from([".", "_", "__", "-", "--"]), ALNUM), max_size=3),
)
TAG = st.builds(lambda a, rest: a + rest, st.sampled_from(string.ascii_letters + string.digits + "_"),
                st.text(alphabet=string.ascii_letters + string.digits + "_.-", max_size=127))
DIGEST = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64).map("sha256:".__add__)
LABEL = st.one_of(st.sampled_from(LOWER_ALNUM), word(LOWER_ALNUM, LOWER_ALNUM + "-", LOWER_ALNUM, 0, 12))
TOP_LABEL = word(string.ascii_lowercase, LOWER_ALNUM + "-", LOWER_ALNUM, 0, 6)  # a name, not a number: `a.0` is no host
HOST = st.builds(lambda labels, top: ".".join([*labels, top]), st.lists(LABEL, min_size=1, max_size=3), TOP_LABEL)
PORT = st.integers(1, 65535)
ACCOUNT_ID = word(string.ascii_lowercase, LOWER_ALNUM + "-", LOWER_ALNUM, 4, 28)
PROJECT = ACCOUNT_ID  # the same rule: 6-30, a letter first, no trailing hyphen
ENV_NAME = st.builds(lambda a, rest: a + rest, st.sampled_from(string.ascii_letters + "_"),
                     st.text(alphabet=string.ascii_letters + string.digits + "_", max_size=12))




def returns_or_pipe_error(parse, *args):
    """The contract: a value, or a PipeError whose message is one printable line of bounded length naming the variable."""
    try:
        return parse(*args)
    except PipeError as error:
        assert error.message.isprintable() and len(error.message) < MAX_LINE, error.message
        assert error.message.startswith(args[0]) or args[0] in error.message
        return error


# --- any text --------------------------------------------------------------------------------

@CRASH_HUNT
@given(TEXT)
@example("http://[::1")  # regressions found here: urlsplit's ValueError escaped, '][::1' passed as loopback,
@example("projects/my\nproj/locations/global")  # a raw newline in a hint split the line,
@example("²")  # and str.isdigit() let int() fail
def test_text_parsers_return_or_raise_pipe_error(value):
    for name, parse in [
        ("WORKLOAD_IDENTITY_PROVIDER", parsers.workload_identity_provider),
        ("SERVICE_ACCOUNT", parsers.service_account),
        ("PROJECT_ID", parsers.project_id),
        ("IMAGE", parsers.image),
        ("REGISTRIES", parsers.registry_host),
        ("STS_ENDPOINT", parsers.endpoint),
        ("UNIVERSE_DOMAIN", parsers.universe_domain),
        ("DEBUG", parsers.boolean),
        ("ACCESS_TOKEN_SCOPES", parsers.scope),
        ("REQUEST_REASON", parsers.header_value),
        ("ID_TOKEN_AUDIENCE", parsers.id_token_audience),
    ]:
        returns_or_pipe_error(parse, name, value)


@CRASH_HUNT
@given(TEXT, st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3))
def test_env_entry_returns_a_pair_or_raises(item, environ):
    result = returns_or_pipe_error(parsers.env_entry, "ENV", item, environ)
    if not isinstance(result, PipeError):
        key, value = result
        assert item == key or item.startswith(key + "=")


@CRASH_HUNT
@given(TEXT, st.integers(0, 100), st.integers(0, 100_000))
def test_seconds_returns_a_bounded_int_or_raises(value, minimum, span):
    result = returns_or_pipe_error(parsers.seconds, "ACCESS_TOKEN_LIFETIME", value, minimum, minimum + span)
    assert isinstance(result, PipeError) or minimum <= result <= minimum + span


ENV_KEYS = st.sampled_from(["ENV", "ENV_COUNT", "ENV_0", "ENV_1", "ENV_2", "OTHER"])


@CRASH_HUNT
@given(st.dictionaries(ENV_KEYS, TEXT, max_size=5))
@example({"ENV_COUNT": "²"})
def test_string_list_on_any_environment(env):
    result = returns_or_pipe_error(parsers.string_list, "ENV", env)
    assert isinstance(result, PipeError) or all(isinstance(item, str) for item in result)


# --- round trips ---------------------------------------------------------------------------

@ROUND_TRIP
@given(NUMBER, ID, ID, st.sampled_from(["", "//iam.googleapis.com/", "https://iam.googleapis.com/"]), st.sampled_from(["", " ", "\n"]))
def test_a_valid_provider_parses_to_its_parts(number, pool, provider_id, prefix, padding):
    name = f"projects/{number}/locations/global/workloadIdentityPools/{pool}/providers/{provider_id}"
    parsed = parsers.workload_identity_provider("WORKLOAD_IDENTITY_PROVIDER", padding + prefix + name + padding)
    assert parsed == parsers.Provider(number, pool, provider_id)
    assert parsed.name == name and parsed.audience == "//iam.googleapis.com/" + name


@ROUND_TRIP
@given(
    st.one_of(st.none(), HOST, st.tuples(HOST, PORT).map(lambda hp: f"{hp[0]}:{hp[1]}"), st.just("localhost:5000")),
    st.lists(PATH_COMPONENT, min_size=1, max_size=4),
    st.one_of(st.none(), TAG),
    st.one_of(st.none(), DIGEST),
)
def test_a_valid_image_keeps_its_repository_tag_and_digest(host, components, tag, digest):
    repository = "/".join(([host] if host else []) + components)
    reference = repository + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    if len(repository) > 255:
        return
    image = parsers.image("IMAGE", reference)
    assert (image.repository, image.tag, image.digest) == (repository, tag, digest)
    assert image.host == (host or "docker.io") or (host is None and "." in components[0])
    # What the daemon is asked to pull parses back to the same image.
    again = parsers.image("IMAGE", image.reference)
    assert (again.repository, again.digest) == (repository, digest)


@ROUND_TRIP
@given(ACCOUNT_ID, PROJECT)
def test_a_valid_service_account_and_project_are_kept(account, project):
    email = f"{account}@{project}.iam.gserviceaccount.com"
    assert parsers.service_account("SERVICE_ACCOUNT", f" {email} ") == email
    assert service_accounts.project_id(email) == project
    assert parsers.project_id("PROJECT_ID", project) == project


@ROUND_TRIP
@given(HOST, st.one_of(st.none(), PORT), st.sampled_from(["", "/", "/private/sts", "/v1/"]))
def test_a_valid_endpoint_is_kept_and_stays_safe_to_extend(host, port, path):
    url = f"https://{host}" + (f":{port}" if port else "") + path
    result = parsers.endpoint("STS_ENDPOINT", url)
    assert result == url.rstrip("/")
    assert not any(c in result for c in "?#@ ")


@CRASH_HUNT
@given(TEXT)
@example("HTTP://][::1")
def test_an_accepted_endpoint_is_https_or_loopback_http(value):
    result = returns_or_pipe_error(parsers.endpoint, "STS_ENDPOINT", value)
    if not isinstance(result, PipeError):
        url = urls.parse(result)  # one reading: what the pipe keeps is what pipe.urls reads, unchanged
        assert url is not None and str(url) == result and urls.may_carry_tokens(url)
        assert not any(c in result for c in "?#@ \\%") and not result.endswith("/")


@ROUND_TRIP
@given(HOST, st.one_of(st.none(), PORT))
def test_a_valid_registry_host_and_universe_are_kept(host, port):
    value = host + (f":{port}" if port else "")
    assert parsers.registry_host("REGISTRIES", f"https://{value.upper()}/") == value
    assert parsers.universe_domain("UNIVERSE_DOMAIN", host.upper()) == host


@ROUND_TRIP
@given(ENV_NAME, st.text())
def test_env_entries_keep_name_and_value(name, value):
    assert parsers.env_entry("ENV", f"{name}={value}", {}) == (name, value)


@ROUND_TRIP
@given(st.integers(1, 43200), st.sampled_from(["", "s", "S"]), st.sampled_from(["", " "]))
def test_seconds_round_trip(number, suffix, padding):
    assert parsers.seconds("ACCESS_TOKEN_LIFETIME", f"{padding}{number}{suffix}{padding}", 1, 43200) == number


@ROUND_TRIP
@given(st.sampled_from(["true", "yes", "y", "on", "1", "false", "no", "n", "off", "0"]), st.data())
def test_booleans_in_any_case(word, data):
    cased = "".join(c.upper() if data.draw(st.booleans()) else c for c in word)
    assert parsers.boolean("DEBUG", f" {cased} ") is (word in ("true", "yes", "y", "on", "1"))


@ROUND_TRIP
@given(st.lists(st.text(alphabet=string.ascii_letters + string.digits + "=-_ ./").map(str.strip).filter(bool), max_size=5))
def test_lists_round_trip_in_both_forms(items):
    counted = {"ENV_COUNT": str(len(items)), **{f"ENV_{i}": item for i, item in enumerate(items)}}
    assert parsers.string_list("ENV", counted) == items
    assert parsers.string_list("ENV", {"ENV": "\n".join(items)}) == items
    assert parsers.string_list("REGISTRIES", {"REGISTRIES": ",".join(items)}) == items


@CRASH_HUNT
@given(TEXT)
@example("alpine:tä")  # Python's \w is Unicode, Docker's is not
def test_an_accepted_image_is_what_docker_accepts(value):
    result = returns_or_pipe_error(parsers.image, "IMAGE", value)
    if not isinstance(result, PipeError):
        assert result.reference.isascii() and result.path == result.path.lower() and len(result.repository) <= 255


@CRASH_HUNT
@given(TEXT)
def test_accepted_scopes_and_header_values_are_safe_on_the_wire(value):
    scope = returns_or_pipe_error(parsers.scope, "ACCESS_TOKEN_SCOPES", value)
    assert isinstance(scope, PipeError) or (scope.startswith("https://") and scope.isascii() and " " not in scope)
    header = returns_or_pipe_error(parsers.header_value, "REQUEST_REASON", value)
    assert isinstance(header, PipeError) or (header.isascii() and header.isprintable() and header == header.strip())


@ROUND_TRIP
@given(st.text(alphabet=string.ascii_letters + string.digits + "._-", min_size=1, max_size=40))
def test_short_scope_names_expand(short):
    assert parsers.scope("ACCESS_TOKEN_SCOPES", short) == parsers.SCOPE_PREFIX + short
    assert parsers.scope("ACCESS_TOKEN_SCOPES", parsers.SCOPE_PREFIX + short) == parsers.SCOPE_PREFIX + short


@CRASH_HUNT
@given(TEXT)
@example("127.1:5000")
@example("registry.example.com.")
def test_an_accepted_registry_host_is_exactly_a_netloc_pipe_urls_reads(value):
    result = returns_or_pipe_error(parsers.registry_host, "REGISTRIES", value)
    if not isinstance(result, PipeError):
        assert urls.parse(f"https://{result}").netloc == result == result.lower()


@CRASH_HUNT
@given(TEXT)
@example("https://svc.a.run.app\n\x1b[32m✔ forged")
def test_an_accepted_id_token_audience_is_a_url_or_client_id(value):
    result = returns_or_pipe_error(parsers.id_token_audience, "ID_TOKEN_AUDIENCE", value)
    if not isinstance(result, PipeError):
        assert result.isprintable() and result.isascii() and len(result) <= parsers.TEXT_LIMIT
        assert urls.parse(result) is not None or result.endswith(".apps.googleusercontent.com")


# --- key material in a value ----------------------------------------------------------------

BASE64_KEY = st.binary(min_size=24, max_size=300).map(lambda b: base64.b64encode(b).decode().rstrip("="))
URLSAFE = st.binary(min_size=16, max_size=300).map(lambda b: base64.urlsafe_b64encode(b).decode().rstrip("="))  # token alphabet
MIXED = BASE64_KEY.filter(lambda k: any(c.isupper() for c in k) and any(c.islower() for c in k) and any(c.isdigit() for c in k)
                          and max(map(len, k.split("/"))) >= 32)  # what the rule calls key material: a long mixed run


@CRASH_HUNT
@given(TEXT, st.one_of(MIXED, URLSAFE.map("ya29.a0".__add__), URLSAFE.map(lambda k: jwt({"k": k}))), TEXT)
def test_key_or_token_material_is_never_echoed(before, secret, after):
    message = parsers.bad("SERVICE_ACCOUNT", before + secret + after, "a service account e-mail").message
    assert secret not in message and secret[:40] not in message
