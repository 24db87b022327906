"""GOOGLE_OIDC_CONFIG_FILE: the credential configuration a user gives the pipe (the `external_account` file that
`gcloud iam workload-identity-pools create-cred-config` writes), read for the values the pipe's variables would carry.
The files the pipe writes itself are pipe.pipe_cred_config's.

Every field is either honoured exactly or refused by name: a file the pipe would read differently from
google-auth or gcloud (another project in the impersonation URL, a token URL with a trailing slash) fails
here, before any token is sent. Values from the file are never echoed unless they are plain URLs or names.
"""

import base64
import binascii
import codecs
import errno
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from pipe import clone_dirs, parsers, provider, shown, untrusted
from pipe.errors import PipeError

NAME = "GOOGLE_OIDC_CONFIG_FILE"
MAX_BYTES = untrusted.MAX_JSON  # gcloud's output is under 1 KB
JWT = "urn:ietf:params:oauth:token-type:jwt"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
MAX_LIFETIME = 43200  # 12 h, the most Google grants (with constraints/iam.allowServiceAccountCredentialLifetimeExtension)
REGENERATE = "regenerate it with `gcloud iam workload-identity-pools create-cred-config`"
_IMPERSONATION_RE = re.compile(r"(?P<root>.*?)/v1/projects/(?P<project>[^/]*)/serviceAccounts/(?P<sa>[^/]*):generateAccessToken")
# Sources google-auth reads (identity_pool, pluggable); the pipe feeds the step token instead of any of them.
_SOURCES = ("file", "url", "executable", "certificate")
_SOURCE_KEYS = {"file": str, "url": str, "headers": dict, "format": dict, "executable": dict, "certificate": dict}
_HONOURED = ("type", "audience", "subject_token_type", "universe_domain", "token_url", "token_info_url",
             "service_account_impersonation_url", "service_account_impersonation", "credential_source")
_REFUSED = {
    "workforce_pool_user_project": "is for workforce pools (people); the pipe signs in with a workload identity pool's provider: "
                                   "remove it and use a workload identity provider's configuration",
    "client_secret": "authenticates to STS with an OAuth client, which the pipe never does: remove client_id and client_secret "
                     "(and rotate the secret if the file is committed)",
    "client_id": "authenticates to STS with an OAuth client, which the pipe never does: remove client_id",
    "quota_project_id": "sets a quota project, which the pipe cannot apply to its calls: remove it",
}


@dataclass(frozen=True)
class Settings:
    """What the file says, as the pipe's variables would say it."""

    variables: dict[str, str] = field(default_factory=dict)  # variable name -> value, for each variable the file sets
    fields: dict[str, str] = field(default_factory=dict)  # variable name -> the file's field it came from
    subject_token_type: str = JWT


def load(value: str | None, cwd: Path, clone: Path | None = None) -> Settings:
    """The settings in GOOGLE_OIDC_CONFIG_FILE (a path in the clone, JSON, or base64 JSON); empty without one. A path
    is read relative to `cwd` and must stay in the clone (`clone`, else `cwd`), reached without following links: the
    file is the repository's, and nothing outside it is."""
    if not value:
        return Settings()
    return _settings(_json(_content(value, cwd, clone or cwd)))


# --- reading -------------------------------------------------------------------------------------


def _content(value: str, cwd: Path, clone: Path) -> bytes:
    text = value.strip()
    if len(text) > 2 * MAX_BYTES:  # base64 of MAX_BYTES, with line breaks, is well under this
        raise PipeError(f"{NAME} is {len(text)} characters long (value hidden), more than a credential configuration ever is: {REGENERATE}.")
    if text.lstrip("\ufeff").startswith("{"):
        return text.encode()
    data = _file(text, cwd, clone)
    if data is not None:
        return data
    try:  # `base64` wraps at 76 columns: line breaks are not part of the content
        decoded = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if decoded.removeprefix(codecs.BOM_UTF8).lstrip().startswith(b"{"):
        return decoded
    raise PipeError(
        f"{NAME} is {shown.path(value)}, but it must be the path of a credential configuration file in the clone "
        "(there is no such file), its JSON, or that JSON base64-encoded."
    )


def _file(text: str, cwd: Path, clone: Path) -> bytes | None:
    """The file's bytes, or None when the value names no file (so it may be JSON or base64)."""
    if "\x00" in text or "\n" in text:
        return None
    try:
        # O_NONBLOCK: a FIFO planted in the clone must not hang the step; fstat then refuses it.
        fd = clone_dirs.open_in_clone(clone, cwd / text)
    except ValueError:
        if not os.path.exists(cwd / text):
            return None  # no file anywhere: perhaps JSON or base64 after all
        raise PipeError(f"{NAME} names {shown.path(text, exists=True)}, outside the clone: the pipe reads a credential "
                        "configuration only from the repository's own files; commit it, or pass its JSON.") from None
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        if error.errno == errno.ENAMETOOLONG:  # base64 content longer than a file name can be
            return None
        if error.errno == errno.ELOOP:
            raise PipeError(f"{NAME} names {shown.path(text, exists=True)}, which is a link (or lies behind one): the pipe "
                            "follows no link in the clone; name the file itself.") from None
        raise PipeError(f"{NAME} names {shown.path(text, exists=True)}, which cannot be read ({error.strerror}): "
                        "make it a readable file in the clone.") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise PipeError(f"{NAME} names the directory {shown.path(text, exists=True)}: give the path of the credential configuration file in it.")
        raise PipeError(f"{NAME} names {shown.path(text, exists=True)}, which is not a regular file: give the path of a credential configuration file.")
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise PipeError(f"{NAME} names a file of more than {MAX_BYTES // 1024} KB, far more than a credential configuration: {REGENERATE}.")
    return data


def _json(data: bytes) -> dict:
    try:
        return untrusted.json_object(data, unique_keys=True)
    except untrusted.NotJson as error:
        if error.reason == "is UTF-16 text":  # as Windows PowerShell's `>` writes
            raise PipeError(f"{NAME} is UTF-16 text: save it as UTF-8, e.g. with `Out-File -Encoding utf8`.") from None
        if error.reason.startswith("has the field"):
            raise PipeError(f"{NAME} {error.reason}: keep one.") from None
        raise PipeError(f"{NAME} {error.reason}: {REGENERATE}.") from None


# --- the fields ----------------------------------------------------------------------------------


def _field(name: str) -> str:
    return f"{NAME}'s {name}"


def _kind(value) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return {str: "a string", int: "a number", float: "a number", list: "a list", dict: "an object"}.get(type(value), "a value")


def _typed(info: dict, name: str, kind: type):
    value = info.get(name)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        expected = {str: "a string", dict: "an object", int: "a whole number"}[kind]
        raise PipeError(f"{_field(name)} is {_kind(value)}, but it must be {expected}: {REGENERATE}.")
    return value


def _settings(info: dict) -> Settings:
    kind = info.get("type")
    if kind == "service_account":
        raise PipeError(
            f"{NAME} holds a service-account key (value hidden), which the pipe never takes: it is keyless, so give it the file "
            "that `gcloud iam workload-identity-pools create-cred-config` writes, and delete the key if it was committed or shared."
        )
    if kind != "external_account":
        what = shown.echo(kind) if isinstance(kind, str) else _kind(kind)
        raise PipeError(f"{NAME} has type {what}, but it must be an external_account credential configuration: {REGENERATE}.")
    for name, why in _REFUSED.items():
        if name in info:
            raise PipeError(f"{_field(name)} {why}.")
    for name in info:
        if name not in _HONOURED:
            raise PipeError(f"{NAME} has the field {shown.echo(name)}, which the pipe does not know: remove it, or {REGENERATE}.")
    settings = Settings(subject_token_type=_subject_token_type(info))
    _audience(info, settings)
    _universe(info, settings)
    _token_url(info, settings)
    _token_info_url(info, settings)  # after universe and token_url: it must name the same STS
    _impersonation_url(info, settings)
    _impersonation_options(info, settings)
    _credential_source(info)
    return settings


def _set(settings: Settings, variable: str, value: str, name: str) -> None:
    settings.variables[variable] = value
    settings.fields[variable] = name


def _audience(info: dict, settings: Settings) -> None:
    value = _typed(info, "audience", str)
    if value is None:
        raise PipeError(f"{NAME} has no audience (the workload identity provider): {REGENERATE}.")
    found = parsers.workload_identity_provider(_field("audience"), value)
    if found.audience != value:  # google-auth sends it verbatim, and STS takes only this form
        raise parsers.bad(_field("audience"), value, f"exactly //iam.googleapis.com/{provider.SHAPE}")
    _set(settings, "WORKLOAD_IDENTITY_PROVIDER", found.name, "audience")


def _subject_token_type(info: dict) -> str:
    value = _typed(info, "subject_token_type", str)
    if value is None:
        raise PipeError(f"{NAME} has no subject_token_type: {REGENERATE}.")
    if value not in (JWT, ID_TOKEN):
        raise parsers.bad(_field("subject_token_type"), value, f"{JWT} or {ID_TOKEN}", why="the pipe exchanges the step's OIDC token, a JWT")
    return value


def _universe(info: dict, settings: Settings) -> None:
    value = _typed(info, "universe_domain", str)
    if value is not None:
        _set(settings, "UNIVERSE_DOMAIN", parsers.universe_domain(_field("universe_domain"), value), "universe_domain")


def _root(info: dict, name: str, suffix: str) -> str | None:
    """The API root of a URL that must be exactly <root><suffix>, with a root the endpoint rule accepts."""
    value = _typed(info, name, str)
    if value is None:
        return None
    expected = f"<root>{suffix}, such as https://{'iamcredentials' if 'serviceAccounts' in suffix else 'sts'}.googleapis.com{suffix}"
    if not value.endswith(suffix):
        raise parsers.bad(_field(name), value, f"exactly {expected}")
    root = parsers.endpoint(_field(name), value[: -len(suffix)])
    if root + suffix != value:  # e.g. an upper-case host or a trailing '/': the pipe would call another URL
        raise parsers.bad(_field(name), value, f"exactly {expected}", why=f"the pipe would call {shown.echo(root + suffix)}")
    return root


def _token_url(info: dict, settings: Settings) -> None:
    root = _root(info, "token_url", "/v1/token")
    if root is not None:
        _set(settings, "STS_ENDPOINT", root, "token_url")


def _token_info_url(info: dict, settings: Settings) -> None:
    root = _root(info, "token_info_url", "/v1/introspect")
    sts = settings.variables.get("STS_ENDPOINT") or f"https://sts.{settings.variables.get('UNIVERSE_DOMAIN', 'googleapis.com')}"
    if root is not None and root != sts:
        raise parsers.bad(_field("token_info_url"), info["token_info_url"], f"{sts}/v1/introspect, on the same STS as token_url")


def _impersonation_url(info: dict, settings: Settings) -> None:
    value = _typed(info, "service_account_impersonation_url", str)
    if value is None:
        return
    name = _field("service_account_impersonation_url")
    form = "<root>/v1/projects/-/serviceAccounts/<SERVICE_ACCOUNT_EMAIL>:generateAccessToken"
    match = _IMPERSONATION_RE.fullmatch(value)
    if not match:
        raise parsers.bad(name, value, form)
    if match["project"] != "-":
        raise parsers.bad(name, value, form, why=f"Google requires projects/- there, not projects/{shown.clipped(match['project'])}")
    email = parsers.service_account(name, match["sa"])
    root = _root(info, "service_account_impersonation_url", f"/v1/projects/-/serviceAccounts/{email}:generateAccessToken")
    _set(settings, "SERVICE_ACCOUNT", email, "service_account_impersonation_url")
    _set(settings, "IAM_CREDENTIALS_ENDPOINT", root, "service_account_impersonation_url")


def _impersonation_options(info: dict, settings: Settings) -> None:
    options = _typed(info, "service_account_impersonation", dict)
    if options is None:
        return
    if info.get("service_account_impersonation_url") is None:
        raise PipeError(f"{_field('service_account_impersonation')} applies only with service_account_impersonation_url: remove it, or {REGENERATE}.")
    for key in options:
        if key != "token_lifetime_seconds":
            raise PipeError(f"{_field('service_account_impersonation')} has the field {shown.echo(key)}, which the pipe does not know: remove it.")
    lifetime = _typed(options, "token_lifetime_seconds", int)
    if lifetime is not None:
        if not 1 <= lifetime <= MAX_LIFETIME:
            raise PipeError(f"{_field('service_account_impersonation')}'s token_lifetime_seconds is {shown.clipped(str(lifetime))}, "
                            f"but it must be from 1 to {MAX_LIFETIME}.")
        _set(settings, "ACCESS_TOKEN_LIFETIME", f"{lifetime}s", "service_account_impersonation")


def _credential_source(info: dict) -> None:
    """Kept for gcloud compatibility and replaced by the step token, so only its shape is checked."""
    source = _typed(info, "credential_source", dict)
    if source is None:
        return
    name = _field("credential_source")
    for key, value in source.items():
        if key not in _SOURCE_KEYS:
            raise PipeError(f"{name} has the field {shown.echo(key)}, which is not a file, url, executable or certificate source: {REGENERATE}.")
        if not isinstance(value, _SOURCE_KEYS[key]):
            raise PipeError(f"{name}'s {key} is {_kind(value)}: {REGENERATE}.")
    kinds = [kind for kind in _SOURCES if kind in source]
    if len(kinds) != 1:
        raise PipeError(f"{name} must have exactly one of file, url, executable or certificate (it has {len(kinds)}): {REGENERATE}.")
    form = source.get("format", {})
    if form.get("type", "text") not in ("text", "json") or (form.get("type") == "json" and not isinstance(form.get("subject_token_field_name"), str)):
        raise PipeError(f"{name}'s format must be {{\"type\": \"text\"}} or {{\"type\": \"json\", \"subject_token_field_name\": …}}: {REGENERATE}.")


