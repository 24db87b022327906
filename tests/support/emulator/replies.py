"""Every response body the emulator can send, in Google's (or the registry's) exact shape.

Texts marked VERBATIM come from google-federation.md / registry-auth.md. Texts marked
CHOSEN are not documented there; the emulator picks a Google-styled wording so tests can
still tell the case apart (see the report of the emulator's author).
"""

from __future__ import annotations

from dataclasses import dataclass, field

JSON = "application/json; charset=UTF-8"


@dataclass
class Reply:
    status: int
    body: dict | None
    headers: dict[str, str] = field(default_factory=dict)
    page: str | None = None  # an HTML page instead of a JSON body (Google's front end, for a URL no API serves)


def not_found_page(path: str) -> Reply:
    """Google's front end for a path no API serves, on every googleapis.com host: its HTML 404 page, not the API's
    JSON error (title and sentences VERBATIM, as quoted in https://github.com/google/google-visualization-issues/issues/2593
    and many threads; the markup around them CHOSEN, trimmed)."""
    escaped = path.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return Reply(404, None, page=(
        "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>Error 404 (Not Found)!!1</title>\n"
        "  <p><b>404.</b> <ins>That\u2019s an error.</ins>\n"
        f"  <p>The requested URL <code>{escaped}</code> was not found on this server.  <ins>That\u2019s all we know.</ins>\n"))


# ---------------------------------------------------------------- STS (OAuth error shape)

class StsError(Exception):
    def __init__(self, error: str, description: str):
        super().__init__(f"{error}: {description}")
        self.error, self.description = error, description

    def reply(self) -> Reply:
        return Reply(400, {"error": self.error, "error_description": self.description})


STS_BAD_GRANT_TYPE = "Invalid value of grant_type in request."  # CHOSEN
STS_BAD_REQUESTED_TYPE = "Invalid value of requested_token_type in request."  # VERBATIM
STS_BAD_SUBJECT_TYPE = "Invalid value of subject_token_type in request."  # CHOSEN
STS_BAD_OPTIONS = "Invalid value of options in request."  # CHOSEN
STS_BAD_AUDIENCE = (  # VERBATIM
    'Invalid value for "audience". This value should be the full resource name of the '
    "Identity Provider."
)
STS_BAD_TARGET = (  # VERBATIM
    'The target service indicated by the "audience" parameters is invalid. This might either '
    "be because the pool or provider is disabled or deleted or because it doesn't exist."
)
STS_NO_SCOPE = "Scope(s) must be provided."  # VERBATIM
STS_EMPTY_SUBJECT_TOKEN = "subject_token must be nonempty"  # CHOSEN (brief's wording)
STS_UNPARSABLE_TOKEN = "Unable to parse the ID Token."  # CHOSEN
STS_ISSUER_UNREACHABLE = "Error connecting to the given credential's issuer."  # VERBATIM
STS_BAD_SIGNATURE = "Unable to verify the ID Token signature."  # VERBATIM
STS_CONDITION_FALSE = "The given credential is rejected by the attribute condition."  # VERBATIM
STS_ATTRIBUTE_TOO_LONG = "The size of mapped attribute exceeds the 127 bytes limit."  # VERBATIM
# /v1/introspect: the fields are GoogleIdentityStsV1IntrospectTokenResponse's (active, scope, exp, username as
# principal://…/subject/<google.subject>); which of them an answer carries, and these texts, are CHOSEN.
STS_INTROSPECT_NO_TOKEN = "Invalid value of token in request."  # CHOSEN
STS_INTROSPECT_BAD_HINT = "Invalid value of token_type_hint in request."  # CHOSEN
INTROSPECT_INACTIVE: dict = {}  # CHOSEN: proto3 JSON drops a false `active`, as it drops a zero expires_in


def sts_wrong_issuer(iss, expected: str) -> str:  # VERBATIM
    return f"The issuer in ID Token {_java(iss)} does not match the expected ones: {expected}"


def sts_wrong_audience(auds: list) -> str:  # VERBATIM ("[a, b]" is Java's list rendering)
    return f"The audience in ID Token [{', '.join(str(a) for a in auds)}] does not match the expected audience."


def sts_stale(iat) -> str:  # VERBATIM
    return f"ID Token issued at {_java(iat)} is stale to sign-in."


def sts_subject_unmapped() -> str:  # CHOSEN
    return "The mapped attribute google.subject must not be empty."


def _java(value) -> str:
    return "null" if value is None else str(value)


# ---------------------------------------------------------------- Google JSON error envelope

class GoogleError(Exception):
    def __init__(self, code: int, status: str, message: str, details=None, headers=None):
        super().__init__(message)
        self.code, self.status, self.message = code, status, message
        self.details, self.headers = details, headers or {}

    def reply(self) -> Reply:
        error = {"code": self.code, "message": self.message, "status": self.status}
        if self.details is not None:
            error["details"] = self.details
        return Reply(self.code, {"error": error}, dict(self.headers))


def unauthenticated() -> GoogleError:  # VERBATIM
    return GoogleError(
        401,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
        "cookie or other valid authentication credential. See "
        "https://developers.google.com/identity/sign-in/web/devconsole-project.",
        headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'},
    )


def scope_insufficient(method: str) -> GoogleError:
    """Google's standard answer when the bearer lacks an OAuth scope the API needs."""
    return GoogleError(
        403,
        "PERMISSION_DENIED",
        "Request had insufficient authentication scopes.",
        details=[
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                "domain": "googleapis.com",
                "metadata": {
                    "method": f"google.iam.credentials.v1.IAMCredentials.{method}",
                    "service": "iamcredentials.googleapis.com",
                },
            }
        ],
        headers={
            "WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", '
            'error="insufficient_scope", scope="https://www.googleapis.com/auth/iam '
            'https://www.googleapis.com/auth/cloud-platform"'
        },
    )


def service_disabled(project_number: str) -> GoogleError:  # VERBATIM message
    url = f"https://console.developers.google.com/apis/api/iamcredentials.googleapis.com/overview?project={project_number}"
    return GoogleError(
        403,
        "PERMISSION_DENIED",
        f"IAM Service Account Credentials API has not been used in project {project_number} "
        f"before or it is disabled. Enable it by visiting {url} then retry. If you enabled this "
        "API recently, wait a few minutes for the action to propagate to our systems and retry.",
        details=[
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [{"description": "Google developers console API activation", "url": url}],
            },
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "SERVICE_DISABLED",
                "domain": "googleapis.com",
                "metadata": {
                    "consumer": f"projects/{project_number}",
                    "service": "iamcredentials.googleapis.com",
                    "serviceTitle": "IAM Service Account Credentials API",
                    "containerInfo": project_number,
                    "activationUrl": url,
                },
            },
        ],
    )


def iam_permission_denied(permission: str) -> GoogleError:  # VERBATIM
    return GoogleError(
        403,
        "PERMISSION_DENIED",
        f"Permission '{permission}' denied on resource (or it may not exist).",
        details=[
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "IAM_PERMISSION_DENIED",
                "domain": "iam.googleapis.com",
                "metadata": {"permission": permission},
            }
        ],
    )


def invalid_argument(message: str) -> GoogleError:
    return GoogleError(400, "INVALID_ARGUMENT", message)


LIFETIME_ZERO = "Lifetime of access token must be larger then zero."  # VERBATIM (sic)
LIFETIME_OVER_HOUR = (  # VERBATIM
    "can not have lifetimes of more than 1 hour. Use the Org Policy Constraint "
    "constraints/iam.allowServiceAccountCredentialLifetimeExtension to allow up to 12 hours."
)
LIFETIME_OVER_12H = "Lifetime of access token must be less than or equal to 43200 seconds."  # CHOSEN
SCOPE_REQUIRED = "Scope is required."  # CHOSEN
AUDIENCE_REQUIRED = "Audience is required."  # CHOSEN


def unknown_field(name: str) -> str:  # Google's proto-JSON parser wording
    return f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.'


def bad_delegate(value) -> str:  # CHOSEN (modelled on Google's account-id message)
    return f"Invalid form of account ID {value}. Should be [Gaia ID |Email |Unique ID |] of the account"


def internal_error() -> GoogleError:
    return GoogleError(500, "INTERNAL", "Internal error encountered.")


def unavailable() -> GoogleError:
    return GoogleError(503, "UNAVAILABLE", "The service is currently unavailable.")


def resource_exhausted() -> GoogleError:
    return GoogleError(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).")


# ---------------------------------------------------------------- registry (distribution errors)

class RegistryError(Exception):
    def __init__(self, status: int, code: str, message: str, headers=None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}

    def reply(self) -> Reply:
        body = {"errors": [{"code": self.code, "message": self.message}]}
        return Reply(self.status, body, dict(self.headers))


def registry_auth_failed() -> RegistryError:  # VERBATIM
    return RegistryError(401, "UNAUTHORIZED", "authentication failed")


def registry_no_credential(realm: str, service: str) -> RegistryError:  # VERBATIM (AR /v2/)
    return RegistryError(
        401,
        "UNAUTHORIZED",
        "not authenticated: No credential was supplied.",
        headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="{service}"'},
    )


def registry_denied(permission: str, resource: str, anonymous: bool) -> RegistryError:  # VERBATIM
    if anonymous:
        message = (
            f'Unauthenticated request. Unauthenticated requests do not have permission "{permission}" '
            f'on resource "{resource}" (or it may not exist)'
        )
    else:
        message = f'Permission "{permission}" denied on resource "{resource}" (or it may not exist)'
    return RegistryError(403, "DENIED", message)


def registry_name_invalid(components: int) -> RegistryError:  # VERBATIM
    return RegistryError(400, "NAME_INVALID", f"invalid number of path components: {components}")


def registry_unknown_service(service: str) -> RegistryError:  # CHOSEN (cannot happen on real AR)
    return RegistryError(400, "UNSUPPORTED", f'unknown registry service "{service}"')


def registry_fault(status: int) -> RegistryError:  # CHOSEN (distribution error codes)
    code = {503: "UNAVAILABLE", 500: "UNKNOWN", 429: "TOOMANYREQUESTS"}[status]
    message = {503: "service unavailable", 500: "unknown error", 429: "too many requests"}[status]
    return RegistryError(status, code, message)
