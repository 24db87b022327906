"""The Google Cloud CLI commands the pipe prints (setup, doctor, error explanations), in one place.

Only forms gcloud 528 accepts (the suite runs every printed command through it): pools and providers
by their full resource name, because gcloud refuses a project number in --project and the pipe only
knows the number; service accounts by projects/<PROJECT>/serviceAccounts/<EMAIL>, where '-' lets
Google find the project when the e-mail does not name it.
"""

import re
import shlex

from pipe import parsers


def arg(value: str) -> str:
    """Plain when safe; double quotes read best around CEL's single-quoted strings; shlex otherwise."""
    if re.fullmatch(r"[\w./:@=,+-]+", value):
        return value
    if re.fullmatch(r'[^"$`\\!\n]*', value):
        return f'"{value}"'
    return shlex.quote(value)


def command(*lines: str) -> str:
    """One command over several lines, as bash reads it."""
    return " \\\n  ".join(lines)


def pool(verb: str, provider, *flags: str) -> str:
    """`provider` is anything with the pool's full resource name in `pool_name` (parsers.Provider, for one)."""
    return " ".join(["gcloud iam workload-identity-pools", verb, provider.pool_name, *flags])


def provider(verb: str, provider, *flags: str) -> str:
    """`provider` is anything with the provider's full resource name in `name`."""
    return " ".join(["gcloud iam workload-identity-pools providers", verb, provider.name, *flags])


# Google-managed defaults name their project too: Compute Engine's by number, App Engine's by ID.
_MANAGED_RE = re.compile(r"(?P<project>[0-9]+)-compute@developer\.gserviceaccount\.com|(?P<app>[a-z][a-z0-9-]+)@appspot\.gserviceaccount\.com")


def service_account_name(email: str) -> str:
    """projects/<PROJECT>/serviceAccounts/<EMAIL>: the project from the e-mail, '-' when it names none."""
    managed = _MANAGED_RE.fullmatch(email)
    project = parsers.project_of(email) or (managed and (managed["project"] or managed["app"])) or "-"
    return f"projects/{project}/serviceAccounts/{email}"


def service_account(verb: str, email: str, *flags: str) -> str:
    """One line (error explanations are one line): `gcloud iam service-accounts VERB projects/<P>/serviceAccounts/<E> ...`."""
    return " ".join(["gcloud iam service-accounts", verb, service_account_name(email), *flags])


def grant_on_service_account(email: str, role: str, member: str) -> str:
    """Over two lines, for setup's shell block."""
    return command(service_account("add-iam-policy-binding", email), f"--role={role} --member={arg(member)}")


def repository(verb: str, name: str, project: str, location: str, *flags: str) -> str:
    """An Artifact Registry repository by its ID with --project (an ID here) and --location."""
    return " ".join(["gcloud artifacts repositories", verb, arg(name), f"--project={arg(project)}", f"--location={arg(location)}", *flags])
