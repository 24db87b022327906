"""Properties of every parser: any text gives a value or a one-line PipeError, and valid values round-trip."""

import base64
import json
import string
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipe import oidc, parsers, service_accounts, shown, untrusted, urls, user_cred_config
from pipe.errors import PipeError
from tests.test_bad_input import gcloud_config, jwt

FAST = settings(max_examples=300, deadline=None)  # any text: the crash hunt
ROUND_TRIP = settings(max_examples=150, deadline=None)  # generated valid values: fewer suffice

# Any text (control characters included), plus text glued from the fragments the grammars care
# about, so the examples also reach the deeper branches (st.text alone rarely writes "http://[").
GRAMMAR = string.ascii_letters + string.digits + "/:@._-+ \t\n=,?#[]²٣ä"
FRAGMENTS = [
    "http://", "https://", "//iam.googleapis.com/", "projects/", "my-proj", "123", "/locations/global/",
    "workloadIdentityPools/", "bb-pool", "/providers/", "gcp-", "localhost", "127.0.0.1", "[::1", "]", ":", "@",
    "sha256:", "a" * 64, "/", ".", "-", "_", "²", "٣", "\n", " ", "=", ",", "true", "0", "s",
]
TEXT = st.one_of(
    st.text(),
    st.text(alphabet=GRAMMAR),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(alphabet=GRAMMAR, max_size=2)), max_size=8).map("".join),
)

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


MAX_LINE = 1200  # the longest template plus 80 echoed characters, each escaped to at most 10


def returns_or_pipe_error(parse, *args):
    """The contract: a value, or a PipeError whose message is one printable line of bounded length naming the variable."""
    try:
        return parse(*args)
    except PipeError as error:
        assert error.message.isprintable() and len(error.message) < MAX_LINE, error.message
        assert error.message.startswith(args[0]) or args[0] in error.message
        return error


# --- any text --------------------------------------------------------------------------------

@FAST
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


@FAST
@given(TEXT, st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3))
def test_env_entry_returns_a_pair_or_raises(item, environ):
    result = returns_or_pipe_error(parsers.env_entry, "ENV", item, environ)
    if not isinstance(result, PipeError):
        key, value = result
        assert item == key or item.startswith(key + "=")


@FAST
@given(TEXT, st.integers(0, 100), st.integers(0, 100_000))
def test_seconds_returns_a_bounded_int_or_raises(value, minimum, span):
    result = returns_or_pipe_error(parsers.seconds, "ACCESS_TOKEN_LIFETIME", value, minimum, minimum + span)
    assert isinstance(result, PipeError) or minimum <= result <= minimum + span


ENV_KEYS = st.sampled_from(["ENV", "ENV_COUNT", "ENV_0", "ENV_1", "ENV_2", "OTHER"])


@FAST
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


@FAST
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


@FAST
@given(TEXT)
@example("alpine:tä")  # Python's \w is Unicode, Docker's is not
def test_an_accepted_image_is_what_docker_accepts(value):
    result = returns_or_pipe_error(parsers.image, "IMAGE", value)
    if not isinstance(result, PipeError):
        assert result.reference.isascii() and result.path == result.path.lower() and len(result.repository) <= 255


@FAST
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


@FAST
@given(TEXT)
@example("127.1:5000")
@example("registry.example.com.")
def test_an_accepted_registry_host_is_exactly_a_netloc_pipe_urls_reads(value):
    result = returns_or_pipe_error(parsers.registry_host, "REGISTRIES", value)
    if not isinstance(result, PipeError):
        assert urls.parse(f"https://{result}").netloc == result == result.lower()


@FAST
@given(TEXT)
@example("https://svc.a.run.app\n\x1b[32m✔ forged")
def test_an_accepted_id_token_audience_is_a_url_or_client_id(value):
    result = returns_or_pipe_error(parsers.id_token_audience, "ID_TOKEN_AUDIENCE", value)
    if not isinstance(result, PipeError):
        assert result.isprintable() and result.isascii() and len(result) <= parsers.TEXT_LIMIT
        assert urls.parse(result) is not None or result.endswith(".apps.googleusercontent.com")


# --- echoing values ----------------------------------------------------------------------------

@FAST
@given(st.one_of(TEXT, st.text(min_size=81, max_size=400)))
def test_an_echoed_value_is_one_short_printable_piece(value):
    echoed = shown.echo(value)
    assert echoed.isprintable() and len(echoed) < 900
    assert echoed == "(hidden)" or repr(value[: shown.ECHO_LIMIT]) in echoed


BASE64_KEY = st.binary(min_size=24, max_size=300).map(lambda b: base64.b64encode(b).decode().rstrip("="))
URLSAFE = st.binary(min_size=16, max_size=300).map(lambda b: base64.urlsafe_b64encode(b).decode().rstrip("="))  # token alphabet
MIXED = BASE64_KEY.filter(lambda k: any(c.isupper() for c in k) and any(c.islower() for c in k) and any(c.isdigit() for c in k)
                          and max(map(len, k.split("/"))) >= 32)  # what the rule calls key material: a long mixed run


@FAST
@given(TEXT, st.one_of(MIXED, URLSAFE.map("ya29.a0".__add__), URLSAFE.map(lambda k: jwt({"k": k}))), TEXT)
def test_key_or_token_material_is_never_echoed(before, secret, after):
    message = parsers.bad("SERVICE_ACCOUNT", before + secret + after, "a service account e-mail").message
    assert secret not in message and secret[:40] not in message


# --- the step token ----------------------------------------------------------------------------

JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=20,
)
CLAIM_NAMES = st.sampled_from(["aud", "exp", "iat", "iss", "sub", "branchName", "repositoryUuid"])


@FAST
@given(st.one_of(JSON, st.dictionaries(CLAIM_NAMES, JSON, max_size=5)))
@example({"aud": ["x", 5]})
@example({"exp": 10**400})
def test_any_token_payload_is_read_or_refused_in_one_line_and_never_breaks_a_message(payload):
    token = jwt(json.dumps(payload))
    try:
        step = oidc.read({"OIDC_TOKEN": token}, now=0)
    except PipeError as error:
        assert error.message.isprintable() and token not in error.message
        return
    assert all(isinstance(a, str) and a.isprintable() for a in step.audiences)
    for name in ("aud", "exp", "iat", "iss", "sub", "branchName", "missing"):
        text = step.claim(name)
        assert isinstance(text, str) and text.isprintable() and len(text) <= shown.CLAIM_LIMIT + 1


@FAST
@given(st.one_of(TEXT, st.text(alphabet=string.ascii_letters + string.digits + "-_.=", max_size=200)))
def test_any_token_text_is_decoded_or_refused_without_echo(value):
    try:
        oidc.decode_claims(value, "OIDC_TOKEN")
    except PipeError as error:
        # One of two fixed sentences (with the length): no room for any part of the token.
        reason, hidden, fix = error.message.replace(str(len(value)), "#", 1).partition(" (value hidden): ")
        assert reason in ("OIDC_TOKEN is not a JWT", "OIDC_TOKEN is # characters long, far more than a JWT from Bitbucket ever is"), error.message
        assert hidden and fix == "pass Bitbucket's $BITBUCKET_STEP_OIDC_TOKEN unchanged."


# --- GOOGLE_OIDC_CONFIG_FILE ---------------------------------------------------------------------

FIELDS = st.sampled_from(sorted(gcloud_config()) + ["token_info_url", "service_account_impersonation", "quota_project_id", "zzz"])


@FAST
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


@FAST
@given(st.binary(max_size=300))
def test_any_bytes_as_a_config_file_are_read_or_refused_in_one_line(tmp_path_factory, data):
    directory = tmp_path_factory.mktemp("clone")
    (directory / "cred.json").write_bytes(data)
    try:
        user_cred_config.load("cred.json", directory)
    except PipeError as error:
        assert error.message.startswith(user_cred_config.NAME) and error.message.isprintable()


def nesting(value) -> int:
    if isinstance(value, list):
        return 1 + max(map(nesting, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(nesting, value.values()), default=0)
    return 0


@FAST
@given(JSON, st.booleans())
@example(["]]]", {"b": '\\"[['}], False)
def test_json_depth_counts_what_json_would_nest(value, indent):
    assert untrusted.json_depth(json.dumps(value, indent=2 if indent else None)) == nesting(value)
