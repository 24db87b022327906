"""Every Google Cloud CLI command the pipe prints (setup, doctor, error explanations), in one place.

Only forms gcloud 528 accepts (the suite runs every printed command through it, and checks that each value reaches
gcloud as exactly the one value meant). Every value a builder here receives goes through `arg`, whoever supplied it
(a server's error text may name the API or the project), so a value is always one shell word, never a command.
Pools and providers go by their full resource name, because gcloud refuses a
project number in --project and the pipe only knows the number; service accounts by
projects/<PROJECT>/serviceAccounts/<EMAIL>, where '-' lets Google find the project when the e-mail does not name it.
"""

import re
import shlex

from pipe import google_registries, service_accounts

_DELIMITERS = (":", ";", "|", "#", "~", "+", "!", "@", "%", "&", "*", "=", "/")


def arg(value: str) -> str:
    """One shell word: plain when safe; double quotes read best around CEL's single-quoted strings; shlex otherwise."""
    if re.fullmatch(r"[\w./:@=,+-]+", value):
        return value
    if re.fullmatch(r'[^"$`\\!\n]*', value):
        return f'"{value}"'
    return shlex.quote(value)


def list_flag(flag: str, values: list[str] | tuple[str, ...]) -> str:
    """`--flag=a,b` for one of gcloud's list flags, each value reaching gcloud whole: a value with a comma (or a first
    value starting with '^') switches to gcloud's `^DELIM^` syntax (`gcloud topic escaping`) with a delimiter no
    value contains."""
    joined = ",".join(values)
    if any("," in value for value in values) or joined.startswith("^"):
        delimiter = next(d for d in (*_DELIMITERS, *(d * 2 for d in _DELIMITERS)) if not any(d in v for v in values))
        joined = f"^{delimiter}^" + delimiter.join(values)
    return f"{flag}={arg(joined)}"


def command(*lines: str) -> str:
    """One command over several lines, as bash reads it."""
    return " \\\n  ".join(lines)


def pool(verb: str, provider, *flags: str) -> str:
    """`provider` is anything with the pool's full resource name in `pool_name` (provider.Provider, for one)."""
    return " ".join(["gcloud iam workload-identity-pools", verb, arg(provider.pool_name), *flags])


def provider(verb: str, provider, *flags: str) -> str:
    """`provider` is anything with the provider's full resource name in `name`."""
    return " ".join(["gcloud iam workload-identity-pools providers", verb, arg(provider.name), *flags])


def service_account(verb: str, email: str, *flags: str) -> str:
    """One line: `gcloud iam service-accounts VERB projects/<P>/serviceAccounts/<E> ...`."""
    return " ".join(["gcloud iam service-accounts", verb, arg(service_accounts.resource_name(email)), *flags])


def grant_on_service_account(email: str, role: str, member: str) -> str:
    """Over two lines, for setup's shell block."""
    return command(service_account("add-iam-policy-binding", email), f"--role={role} --member={arg(member)}")


def repository(verb: str, name: str, project: str, location: str, *flags: str) -> str:
    """An Artifact Registry repository by its ID with --project (an ID here) and --location."""
    return " ".join(["gcloud artifacts repositories", verb, arg(name), f"--project={arg(project)}", f"--location={arg(location)}", *flags])


def images_list(host: str, path: str) -> str | None:
    """What an image path holds, tags included, by its Artifact Registry name (gcr.io/P/I is in repository gcr.io:
    LOCATION-docker.pkg.dev/P/gcr.io/I, the only form the command takes); None for an image elsewhere."""
    found = google_registries.repository_of(host, path)
    if found is None:
        return None
    if google_registries.is_container_registry(host):
        project, _, rest = path.partition("/")
        path, host = f"{project}/{host}/{rest}", f"{found.location}-docker.pkg.dev"
    return f"gcloud artifacts docker images list {arg(host + '/' + path)} --include-tags"


def services_enable(*apis: str, project: str) -> str:
    return f"gcloud services enable {' '.join(map(arg, apis))} --project={arg(project)}"


def project_number(project_id: str) -> str:
    return f"gcloud projects describe {arg(project_id)} --format={arg('value(projectNumber)')}"


def project_describe(project: str) -> str:
    return f"gcloud projects describe {arg(project)}"


def project_grant(project: str, role: str, member: str) -> str:
    return f"gcloud projects add-iam-policy-binding {arg(project)} --role={arg(role)} --member={arg(member)}"


def project_undelete(project: str) -> str:
    return f"gcloud projects undelete {arg(project)}"


def billing_describe(project: str) -> str:
    return f"gcloud billing projects describe {arg(project)}"


def org_policy_describe(constraint: str, project: str) -> str:
    return f"gcloud resource-manager org-policies describe {arg(constraint)} --project={arg(project)} --effective"


def artifact_locations(project: str) -> str:
    """The locations Artifact Registry serves (gcloud needs a project to ask, any the caller may use)."""
    return f"gcloud artifacts locations list --project={arg(project)}"


def gcr_migrate(project: str) -> str:
    """Container Registry's move to Artifact Registry (gcr.io repositories that keep the image names)."""
    return f"gcloud artifacts docker upgrade migrate --projects={arg(project)}"


def no_requester_pays(bucket: str) -> str:
    return f"gcloud storage buckets update {arg(bucket)} --no-requester-pays"
