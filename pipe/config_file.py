"""GOOGLE_OIDC_CONFIG_FILE: a user's `external_account` credential configuration (what `gcloud iam
workload-identity-pools create-cred-config` writes), read for the values the pipe's variables would carry."""

import base64
import binascii
import json
import re
from pathlib import Path

from pipe.errors import PipeError

NAME = "GOOGLE_OIDC_CONFIG_FILE"
_IMPERSONATION_RE = re.compile(r"(?P<root>https?://[^/]+(?:/[^/]+)*?)/v1/projects/-/serviceAccounts/(?P<sa>[^/:]+):generateAccessToken")
_TOKEN_URL_RE = re.compile(r"(?P<root>https?://.+)/v1/token")


def _parse(value: str, cwd: Path) -> dict:
    text = value.strip()
    if not text.startswith("{"):
        path = (cwd / text).expanduser()
        try:
            is_file = path.is_file()
        except OSError:  # base64 content longer than a file name can be
            is_file = False
        if is_file:
            text = path.read_text()
        else:
            try:
                text = base64.b64decode(text, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise PipeError(
                    f"{NAME} is {value!r}, but it must be the path of a credential configuration file in the clone, "
                    "its JSON, or that JSON base64-encoded."
                ) from None
    try:
        info = json.loads(text)
    except ValueError:
        info = None
    if not isinstance(info, dict) or info.get("type") != "external_account":
        raise PipeError(
            f"{NAME} is not an external_account credential configuration: generate one with "
            "`gcloud iam workload-identity-pools create-cred-config` (service-account key files are not accepted)."
        )
    return info


def load(value: str | None, cwd: Path) -> dict:
    """What the pipe's variables would be: provider, service_account, sts, iam, universe, lifetime.

    The file names a token source (usually a file); the pipe ignores it and feeds the step token instead.
    """
    if not value:
        return {}
    info = _parse(value, cwd)
    found = {"provider": info.get("audience")}
    if not isinstance(info.get("service_account_impersonation_url", ""), str) or not isinstance(info.get("token_url", ""), str):
        raise PipeError(f"{NAME} has a URL that is not a string: regenerate it with `gcloud iam workload-identity-pools create-cred-config`.")
    impersonation = _IMPERSONATION_RE.fullmatch(info.get("service_account_impersonation_url") or "")
    if impersonation:
        found.update(service_account=impersonation["sa"], iam=impersonation["root"])
    token_url = _TOKEN_URL_RE.fullmatch(info.get("token_url") or "")
    if token_url:
        found["sts"] = token_url["root"]
    if info.get("universe_domain"):
        found["universe"] = info["universe_domain"]
    impersonation_options = info.get("service_account_impersonation") or {}
    lifetime = impersonation_options.get("token_lifetime_seconds") if isinstance(impersonation_options, dict) else None
    if lifetime:
        found["lifetime"] = f"{lifetime}s"
    for key, value in found.items():
        if value is not None and not isinstance(value, str):
            raise PipeError(f"{NAME} has a {key} that is not a string: regenerate it with `gcloud iam workload-identity-pools create-cred-config`.")
    return {key: value for key, value in found.items() if value}
