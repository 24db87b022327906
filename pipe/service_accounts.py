"""Service account e-mails: which forms IAM issues, and the project each one names."""

import re

_ACCOUNT_ID = r"[a-z](?:[a-z0-9-]{4,28})[a-z0-9]"  # 6-30 characters, as IAM allows
PROJECT_ID = r"[a-z][a-z0-9-]{4,28}[a-z0-9]"
# User-managed and service-agent accounts (a domain-scoped project adds its domain), plus the two Google-managed
# defaults: Compute Engine's (named by the project NUMBER) and App Engine's (named by the project ID).
_USER_MANAGED = re.compile(rf"{_ACCOUNT_ID}@(?P<project>{PROJECT_ID})(?P<domain>(?:\.[a-z0-9-]+)*)\.iam\.gserviceaccount\.com")
_COMPUTE = re.compile(r"(?P<number>[0-9]+)-compute@developer\.gserviceaccount\.com")
_SERVICE_AGENT = re.compile(r"service-[0-9]+@")  # Google's service agents are named by the project NUMBER
_APP_ENGINE = re.compile(rf"(?P<project>{PROJECT_ID})@appspot\.gserviceaccount\.com")


def is_email(text: str) -> bool:
    return any(form.fullmatch(text) for form in (_USER_MANAGED, _COMPUTE, _APP_ENGINE))


def project_id(email: str | None) -> str | None:
    """The project ID the e-mail names: user-managed and App Engine default accounts (Compute's names only a number,
    a service agent's only Google's own domain)."""
    text = email or ""
    if _SERVICE_AGENT.match(text):  # a service agent (service-NUMBER@gcp-sa-….iam…): its domain is Google's, not a project
        return None
    if (user_managed := _USER_MANAGED.fullmatch(text)) and not user_managed["domain"]:  # a domain-scoped ID is not in it
        return user_managed["project"]
    app_engine = _APP_ENGINE.fullmatch(text)
    return app_engine["project"] if app_engine else None


def resource_name(email: str) -> str:
    """projects/<PROJECT>/serviceAccounts/<EMAIL>, the project from the e-mail ('-' lets Google find it otherwise)."""
    compute = _COMPUTE.fullmatch(email)
    project = project_id(email) or (compute["number"] if compute else "-")
    return f"projects/{project}/serviceAccounts/{email}"
