"""Google's and the registries' error models, read into one shape (Failure) that diagnosis explains.

- Google APIs answer with google.rpc.Status: `code`, `status`, `message` and `details`, whose ErrorInfo carries the
  `reason` (google/api/error_reason.proto) and `metadata` (service, consumer, permission, …). STS answers OAuth's
  `error` and `error_description`.
- Registries answer with the OCI distribution spec's `{"errors": [{"code", "message", "detail"}]}`; the Docker
  daemon reports a failed pull as text wrapping that code and message (`Head "<url>": denied: <message>`), an HTTP
  status it did not expect, a Cloud Storage XML error for a layer, or Go's network errors.

Structure first: the reason, the status, the code. Where Google sends only text (registries, older IAM answers),
Google's standard messages name the reason they stand for (_TEMPLATES). Every pattern here is linear and runs on
text cut to untrusted.MAX_TEXT.
"""

import json
import re
from dataclasses import dataclass, field

from pipe import google_registries, retry, untrusted

OCI_CODES = ("BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID", "MANIFEST_BLOB_UNKNOWN",
             "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "MANIFEST_UNVERIFIED", "NAME_INVALID", "NAME_UNKNOWN", "SIZE_INVALID",
             "TAG_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED", "TOOMANYREQUESTS", "UNAVAILABLE", "UNKNOWN")
# How the Docker daemon writes each code in its text (the code's description, lowercase).
_DAEMON_CODES = {code.lower().replace("_", " "): code for code in OCI_CODES}


@dataclass
class Failure:
    """One failed answer: who said it, and what, in structure where there was any."""

    service: str
    status: int | None = None
    code: str = ""  # google.rpc status (PERMISSION_DENIED), OAuth error (invalid_grant) or OCI code (DENIED)
    reason: str = ""  # ErrorInfo's reason, or the reason Google's standard message stands for
    domain: str = ""  # ErrorInfo's domain: googleapis.com for the reasons google/api/error_reason.proto lists
    message: str = ""  # the human part, one line
    metadata: dict = field(default_factory=dict)  # ErrorInfo metadata, and what the message names (project, service, …)
    transient: str | None = None  # pipe.retry's kind, when trying again later can work

    def get(self, key: str, default: str = "") -> str:
        """A value the answer names, only in the form such a value takes: a server may put anything in ErrorInfo's
        metadata, and explanations print these values, some inside commands."""
        value = self.metadata.get(key)
        form = _FORMS.get(key)
        if not isinstance(value, str) or not value or (form is not None and not form.fullmatch(value)):
            return default
        return value

    @property
    def shown_reason(self) -> str:
        """The reason, when it has the form Google's reasons have (it is printed), else ''."""
        return self.reason if _FORMS["reason"].fullmatch(self.reason) else ""


_FIELD_FORM = re.compile(r"[A-Za-z_][\w.]{0,80}")
_FORMS = {  # what each value a Failure names may look like (Google's own names; anything else is not shown)
    "service": re.compile(r"[a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63}){1,5}"),
    "consumer": re.compile(r"(?:projects/|project:)?[a-z0-9][a-z0-9:.-]{0,99}"),
    "constraint": re.compile(r"constraints/[A-Za-z0-9_.]{1,80}"),
    "reason": re.compile(r"[A-Z][A-Z0-9_]{1,63}"),
    "permission": re.compile(r"[a-z]{1,40}(?:\.[A-Za-z]{1,60}){1,4}"),
    "resource": re.compile(r"projects/[a-z0-9][\w.:-]{0,100}/locations/[a-z0-9-]{1,50}/repositories/[a-z0-9._-]{1,100}"),
    "field": _FIELD_FORM,
    "quota_metric": re.compile(r"[a-z0-9.-]{1,100}/[A-Za-z0-9_/.-]{1,100}"),
    "quota_limit": re.compile(r"[A-Za-z0-9_-]{1,100}"),
    "uid": re.compile(r"[\w-]{1,100}"),
    "bucket": re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]"),
    "host": re.compile(r"[a-z0-9.-]{1,253}(?::[0-9]{1,5})?"),
    "path": re.compile(r"[a-z0-9._/-]{1,255}"),
    "title": re.compile(r"[A-Za-z][\w ]{2,80} API"),
    "storage_code": re.compile(r"\w{1,60}"),
    "fetching": re.compile(r"layer"),
    "answer": re.compile(r"web page"),
}


# --- Google's standard messages, and the reason each stands for -------------------------------------------------

_TEMPLATES = (
    ("SERVICE_DISABLED", re.compile(
        r"(?:(?P<title>[A-Z][\w ]{2,80} API) )?has not been used in project (?P<consumer>[\w:.-]{1,100}) before or it is disabled"
        r"|Service '?(?P<service>[\w.-]{1,100})'? is not enabled for consumer '?(?:project:|projects/)?(?P<consumer2>[\w.:-]{1,100})"
        r"|enable (?:or contact project owners to enable )?(?:the )?Google Container Registry API|SERVICE_DISABLED"
        r"|\bAPI (?:has not been enabled|is not enabled)", re.I)),
    ("BILLING_DISABLED", re.compile(
        r"requires billing to be enabled|billing account[^.]{0,80}(?:disabled|closed|delinquent|not open)|billing-related error"
        r"|billing (?:is |has been )?disabled|enable billing|<Code>AccountProblem</Code>|past due balance|BILLING_DISABLED", re.I)),
    # IAM's refusal of a lifetime over 1 hour names the constraint that would allow it: the lifetime is the cause.
    ("LIFETIME_OVER_ONE_HOUR", re.compile(r"lifetimes? of more than 1 hour|lifetime[^.]{0,80}(?:exceeds?|more than)[^.]{0,40}(?:1 hour|3600)", re.I)),
    ("SECURITY_POLICY_VIOLATED", re.compile(r"vpcServiceControlsUniqueIdentifier|VPC Service Controls|SECURITY_POLICY_VIOLATED", re.I)),
    ("RESOURCE_USAGE_RESTRICTION_VIOLATED", re.compile(r"restrictServiceUsage|Resource Usage Restriction", re.I)),
    ("LOCATION_POLICY_VIOLATED", re.compile(r"resourceLocations|location constraint", re.I)),
    ("ORG_POLICY", re.compile(r"organization policy|org(?:anization)?[ -]policy constraint|violates constraint|constraints/[\w.]{1,80}", re.I)),
    ("CONSUMER_INVALID", re.compile(
        # However the project is written ('p', project:p, projects/p, #123) and whatever code words came before it.
        r"Project:? ['\"]?(?:#|project:|projects/)?(?P<project>[\w.:-]{1,100})['\"]? (?:was |is |has been )?"
        r"(?:not found or deleted|deleted|not found|scheduled for deletion|pending deletion|in (?:the )?DELETE_REQUESTED state)"
        r"|Unknown project(?: id)?:? '?(?P<project2>[\w.:-]{1,100})|CONSUMER_INVALID", re.I)),
    ("ACCESS_TOKEN_SCOPE_INSUFFICIENT", re.compile(r"insufficient authentication scopes|ACCESS_TOKEN_SCOPE_INSUFFICIENT", re.I)),
    ("ACCESS_TOKEN_EXPIRED", re.compile(r"token (?:has )?expired|ACCESS_TOKEN_EXPIRED", re.I)),
    ("CONSUMER_SUSPENDED", re.compile(r"project[^.]{0,80} (?:has been )?suspended|CONSUMER_SUSPENDED|GCP_SUSPENDED", re.I)),
    ("USER_PROJECT_MISSING", re.compile(r"requester pays|UserProjectMissing|USER_PROJECT_DENIED", re.I)),
    ("RATE_LIMIT_EXCEEDED", re.compile(r"Quota exceeded for quota metric|rate limit|rate exceeded|RATE_LIMIT_EXCEEDED|RESOURCE_QUOTA_EXCEEDED", re.I)),
    ("GCR_SHUTDOWN", re.compile(r"Container Registry (?:is|has been) (?:deprecated|shut)|shutting down|Request Rejected", re.I)),
)
_API = re.compile(r"apis/api/(?P<service>[a-z0-9.-]{1,100}\.googleapis\.com)|(?P<name>[a-z0-9]{1,40}\.googleapis\.com)")
_PROJECT = re.compile(r"[?&]project=(?P<a>[\w.:-]{1,100})|project #?(?P<b>[0-9]{4,20})|--projects?=['\"]?(?P<c>[a-z][\w.:-]{1,100})"
                      r"|(?:['\"]|orgpolicy:)projects/(?P<d>[a-z0-9][\w.:-]{1,100})(?=['\"\s]|$)")
_CONSTRAINT = re.compile(r"constraints/[\w.]{1,80}")
_BUCKET = re.compile(r"storage\.googleapis\.com/(?P<bucket>[a-z0-9][a-z0-9._-]{1,220}[a-z0-9])/")
_VPC_UID = re.compile(r"vpcServiceControlsUniqueIdentifier:? ?(?P<uid>[\w-]{1,100})")


def _read_templates(failure: Failure, text: str) -> None:
    """Fill in the reason and what the message names, where Google's answer had no ErrorInfo."""
    for reason, pattern in _TEMPLATES:
        found = pattern.search(text)
        if found:
            failure.reason = failure.reason or reason
            named = found.groupdict()
            for key in ("consumer", "consumer2", "project", "project2"):
                if named.get(key):
                    failure.metadata.setdefault("consumer", named[key])
            if named.get("service"):
                failure.metadata.setdefault("service", named["service"])
            if named.get("title"):
                failure.metadata.setdefault("title", named["title"])
            break
    if (api := _API.search(text)) and "service" not in failure.metadata:
        failure.metadata["service"] = api["service"] or api["name"]
    if failure.reason == "SERVICE_DISABLED" and "Container Registry" in text and "service" not in failure.metadata:
        failure.metadata["service"] = "containerregistry.googleapis.com"
    if (project := _PROJECT.search(text)) and "consumer" not in failure.metadata:
        failure.metadata["consumer"] = project["a"] or project["b"] or project["c"] or project["d"]
    if constraint := _CONSTRAINT.search(text):
        failure.metadata.setdefault("constraint", constraint.group(0))
    if uid := _VPC_UID.search(text):
        failure.metadata.setdefault("uid", uid["uid"])
    if bucket := _BUCKET.search(text):
        failure.metadata.setdefault("bucket", bucket["bucket"])


# --- Google's JSON -----------------------------------------------------------------------------------------------

def from_google(body: dict, status: int | None, service: str) -> Failure:
    """Google's answer: google.rpc.Status, OAuth's error shape (STS), or a body that is neither (its text)."""
    failure = Failure(service, status)
    error, explained_by = body.get("error"), ""
    if isinstance(error, dict):  # google.rpc.Status
        failure.code = _text(error.get("status"))
        failure.message = _text(error.get("message"))
        failure.status = status or _number(error.get("code"))
        details = [d for d in (error.get("details") if isinstance(error.get("details"), list) else [])[:10] if isinstance(d, dict)]
        explained_by = _read_violations(failure, details)
        for detail in details:
            if str(detail.get("@type", "")).endswith("google.rpc.ErrorInfo"):
                failure.reason, failure.domain = _text(detail.get("reason")), _text(detail.get("domain"))
                metadata = detail.get("metadata") if isinstance(detail.get("metadata"), dict) else {}
                failure.metadata.update({str(k): _text(v) for k, v in list(metadata.items())[:20]})
                for key in ("policyName", "policy_name"):  # the org policy constraint a policy reason names
                    if failure.metadata.get(key, "").startswith("constraints/"):
                        failure.metadata.setdefault("constraint", failure.metadata[key])
    elif isinstance(error, str):  # OAuth (STS)
        failure.code = error[:100]
        failure.message = _text(body.get("error_description"))
    else:
        failure.message = _message_in(_text(body.get("message")))
        _read_web_page(failure, failure.message)
    _read_templates(failure, f"{failure.message} {failure.reason} {explained_by}")
    failure.transient = _transient(failure, retry.of_google(failure.status, failure.code))
    return failure


def _read_violations(failure: Failure, details: list[dict]) -> str:
    """BadRequest's field violations and PreconditionFailure's violations: the field Google refused (kept as `field`)
    and their descriptions and subjects, which name the cause where the message is only 'invalid argument'."""
    said = []
    for detail in details:
        kind = str(detail.get("@type", ""))
        key = "fieldViolations" if kind.endswith("google.rpc.BadRequest") else "violations" if kind.endswith("google.rpc.PreconditionFailure") else None
        violations = detail.get(key) if key else None
        for violation in (violations if isinstance(violations, list) else [])[:5]:
            if isinstance(violation, dict):
                if key == "fieldViolations" and _FIELD_FORM.fullmatch(_text(violation.get("field"))):
                    failure.metadata.setdefault("field", _text(violation.get("field")))
                    if _text(violation.get("field")).split(".")[-1] == "lifetime":  # the field decides, not its words
                        failure.reason = failure.reason or "LIFETIME_OVER_ONE_HOUR"
                said += [_text(violation.get("subject")), _text(violation.get("description"))]
    return " ".join(part for part in said if part)[:2000]



def _transient(failure: Failure, kind: str | None) -> str | None:
    """Quota and rate limits are retried; a reason that names a setting (API disabled, billing) never is."""
    if failure.reason == "RATE_LIMIT_EXCEEDED":
        return retry.THROTTLED
    return kind if failure.reason in ("", "ACCESS_TOKEN_EXPIRED") else None


# Google's front end's own error pages: the robot page ("That’s an error.", a "!!1" title), and the plain one it
# serves a client it refuses ("Your client does not have permission to get URL … from this server").
_GOOGLES_PAGE = re.compile(r"www\.google\.com/images/errors/robot\.png|That[’']s an error\.|\([A-Za-z ]{2,40}\)!!1"
                           r"|Your client does not have permission to get URL")


def _read_web_page(failure: Failure, text: str) -> None:
    """An HTML page where an API's error should be (Google's front end, a proxy): it says nothing about identities or grants."""
    if untrusted.is_web_page(text):
        failure.metadata["answer"] = "web page"
        if _GOOGLES_PAGE.search(text):
            failure.metadata["page"] = "Google's"
_JSON_MESSAGE = re.compile(r'"message":\s*"((?:[^"\\]|\\.){0,2000})"')


def _message_in(raw: str) -> str:
    """The message of an envelope that is not valid JSON (cut short, or with a trailing comma as Google's page shows)."""
    found = _JSON_MESSAGE.search(raw)
    return found[1].replace('\\"', '"') if found else raw


# --- the registry's answers and the Docker daemon's reports --------------------------------------------------------

_STATUS = re.compile(r"\b(?:HTTP|[Ss]tatus(?: code)?:?|unexpected status(?: code)?:?) ?\[?(?P<a>[1-5][0-9]{2})\b"
                     r"|: (?P<b>[1-5][0-9]{2}) [A-Z][a-z]+(?: [A-Z][a-z]+)*\b|\((?P<c>[1-5][0-9]{2})\)")
_XML_CODE = re.compile(r"<Code>(?P<code>\w{1,60})</Code>(?:<Message>(?P<message>[^<]{0,500})</Message>)?(?:<Details>(?P<details>[^<]{0,500}))?")
_REFERENCE = re.compile(
    r"https?://(?P<host>[a-z0-9.-]{1,253}(?::[0-9]{1,5})?)/v2/(?P<path>[a-z0-9._/-]{1,255}?)/(?:manifests|blobs)/"
    r"|(?:pull access denied for|manifest for|failed to resolve reference|repository) \"?(?P<ref>[a-z0-9.-]{1,253}(?::[0-9]{1,5})?/[a-z0-9._/-]{1,255})"
    r"|request \"/v2/(?P<request>[a-z0-9._/-]{1,255}?)/(?:manifests|blobs)/")
# Else the host of the registry API's root, or of Cloud Storage serving a layer the daemon requested (Go's
# `Get "<url>"`): any other URL (a help link, an OAuth endpoint) names no registry.
_REQUESTED_HOST = re.compile(r"https?://(?P<b>[a-z0-9.-]{1,253}(?::[0-9]{1,5})?)/v2[/\"]"
                             r"|\b(?:Get|GET) \"?https?://(?P<a>(?:[a-z0-9-]{1,63}\.){0,4}(?:storage\.googleapis|googleusercontent)\.com)/")
# The registry refusing the token its own token service issued for the repository (NAME_INVALID on gcr.io): a passing
# fault of the token service, which a fresh token may not share.
_TOKEN_MISMATCH = re.compile(r"does not match bearer token")
_ALIASES = {"unknown blob": "BLOB_UNKNOWN"}  # distribution's own wording for a blob the registry does not have
_PERMANENT_CODES = {"DENIED", "UNAUTHORIZED", "NAME_UNKNOWN", "MANIFEST_UNKNOWN", "BLOB_UNKNOWN", "NAME_INVALID", "TAG_INVALID",
                    "MANIFEST_INVALID", "DIGEST_INVALID", "UNSUPPORTED"}


def from_registry(text: str, status: int | None, service: str) -> Failure:
    """A registry token service's body (OCI errors, Google's JSON or text) or the daemon's report of a pull."""
    text = untrusted.text(text)
    body = untrusted.json_or_none(text)
    if body is not None and isinstance(body.get("error"), dict):
        failure = from_google(body, status, service)
    else:
        failure = Failure(service, status)
        errors = body.get("errors") if body else None
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            failure.code = _text(errors[0].get("code")).upper()
            failure.message = "; ".join(_text(e.get("message")) for e in errors[:5] if isinstance(e, dict))
        else:
            failure.code, failure.message = _daemon_code(text)
        failure.status = status or _embedded_status(text)
        if not untrusted.is_web_page(text):  # a bare 401/403 from the registry says what its code would; a page is no registry's
            failure.code = failure.code or _CODE_OF_STATUS.get(failure.status, "")
        if xml := _XML_CODE.search(text):  # Cloud Storage, serving a layer
            failure.metadata["storage_code"] = xml["code"]
            failure.message = " ".join(part for part in (xml["message"], xml["details"]) if part) or failure.message
        _read_templates(failure, text)
        _read_reference(failure, text)
        if _LAYER.search(text):
            failure.metadata["fetching"] = "layer"
        _read_web_page(failure, text)
        if failure.status == 412 and google_registries.is_container_registry(failure.get("host")):
            failure.reason = failure.reason or "GCR_SHUTDOWN"  # Container Registry refuses every call once shut down
        kind = retry.of_status(status) if status else retry.of_daemon(text)
        if failure.code == "TOOMANYREQUESTS":
            kind = retry.THROTTLED
        elif (failure.code in _PERMANENT_CODES and not _TOKEN_MISMATCH.search(text)) or failure.metadata.get("storage_code"):
            kind = None
        failure.transient = _transient(failure, kind)
    _read_reference(failure, text)
    return failure


# The daemon's words for a failed download of a layer or of the image's config blob (Docker's, and the v1 era's).
_LAYER = re.compile(r"image layer|image configuration|/blobs/sha256:|\bfetching layer", re.I)


def _read_reference(failure: Failure, text: str) -> None:
    """The image the text names (registry host and path), which may be a base image other than IMAGE."""
    found = _REFERENCE.search(text)
    if not found:
        if requested := _REQUESTED_HOST.search(text):
            failure.metadata.setdefault("host", requested["a"] or requested["b"])
            failure.metadata.setdefault("path", "")
        return
    if found["host"]:
        host, path = found["host"], found["path"]
    elif found["ref"]:
        host, path = google_registries.split_name(found["ref"])
    else:
        host, path = "", found["request"]
    failure.metadata.setdefault("host", host)
    failure.metadata.setdefault("path", path)


def _daemon_code(text: str) -> tuple[str, str]:
    """The OCI code in the daemon's text (`…: denied: <message>`, or a leading `denied: <message>`) and the message
    after it; ("", text) without one. The earliest code wins."""
    lowered = text.lower()
    best = None
    for written, code in (*_DAEMON_CODES.items(), *_ALIASES.items()):
        if lowered.startswith(written + ":") or lowered == written:
            at = len(written) + 1
        else:
            found = lowered.find(": " + written)
            end = found + len(written) + 2
            if found < 0 or (end < len(lowered) and lowered[end] != ":"):
                continue
            if end >= len(lowered) and code == "UNKNOWN":  # a trailing ": unknown" is containerd's error class: the
                continue                                   # words before it are the message
            at = end + 1
        if best is None or at < best[0]:
            best = (at, code)
    return (best[1], text[best[0]:].strip()) if best else ("", text)


_CODE_OF_STATUS = {401: "UNAUTHORIZED", 403: "DENIED"}  # the distribution spec's code for each refusal status


def _embedded_status(text: str) -> int | None:
    found = _STATUS.search(text)
    return int(found["a"] or found["b"] or found["c"]) if found else None


def _text(value) -> str:
    if isinstance(value, str):
        return " ".join(untrusted.text(value).split())
    return "" if value is None else " ".join(untrusted.text(json.dumps(value)).split())


def _number(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599 else None
