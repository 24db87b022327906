"""The registries' refusals, explained: a token service's answer to the pipe, the Docker daemon's report of a failed
pull, and the registry's answer to the doctor's read of IMAGE's manifest.

The reasons every service shares come first (pipe.diagnose.explain); then the registry's rules (_REGISTRY_RULES, tried
in order: the most specific words and codes first, the step's network path last); then transient trouble, said for
the pull; else a line that names IMAGE and the doctor.
"""

import re
from http import HTTPStatus

from pipe import gcloud, google_registries, retry
from pipe.config import CLOUD_PLATFORM
from pipe.diagnose import DOCTOR, PROPAGATION, RETRY_BUDGET, Context, explain, gcr_shutdown, image_repository, one_line, said, the_project, transient
from pipe.error_models import Failure, from_registry
from pipe.parsers import Image


def token_service_error(status: int, text: str, image: Image, principal: str, realm: str) -> str:
    """The registry's token service refused the pipe's request for a pull token."""
    failure = from_registry(text, status, f"the token service {realm}")
    return _registry_line(failure, Context(image=image, principal=principal))


def pull_error(text: str, image: Image, principal: str, transient: str | None = None) -> str:
    """The Docker daemon's report of a failed pull, after the retries."""
    failure = from_registry(text, None, "the registry")
    failure.transient = transient or failure.transient
    return _registry_line(failure, Context(image=image, principal=principal))


def manifest_error(status: int, image: Image, principal: str) -> str:
    """The registry's answer when the doctor reads IMAGE's manifest with the pull token."""
    code = {401: "UNAUTHORIZED", 403: "DENIED", 404: "MANIFEST_UNKNOWN"}.get(status, "")
    failure = Failure("the registry", status, code, message=f"HTTP {status} for the manifest of {image.display}",
                      transient=retry.of_status(status))
    return _registry_line(failure, Context(image=image, principal=principal))


def _registry_line(failure: Failure, context: Context) -> str:
    host = failure.get("host") or context.image.host
    failure.service = _registry_name(host) if failure.service == "the registry" else failure.service
    explained = explain(failure, context, _REGISTRY_RULES)
    if failure.transient and explained == transient(failure):
        explained = transient(failure, context.image.display)
    return one_line(explained or f"Pulling {context.image.display} failed ({said(failure)}): check IMAGE, and {DOCTOR}.")


def _registry_name(host: str) -> str:
    if host.endswith("storage.googleapis.com") or host.endswith(".googleusercontent.com"):
        return "Cloud Storage (serving the image's layers)"
    if google_registries.is_container_registry(host):
        return f"Container Registry ({host})"
    return "Artifact Registry" if google_registries.is_google(host) else f"the registry {host}"


_PERMISSION = re.compile(r'Permission ["\'](?P<perm>[\w.]{1,100})["\'] denied on resource ["\'](?P<res>projects/[^"\']{1,300})["\']')
_ANONYMOUS = re.compile(r'Unauthenticated requests do not have permission ["\'](?P<perm>[\w.]{1,100})["\'] on resource '
                        r'["\'](?P<res>projects/[^"\']{1,300})["\']')
_NO_REPOSITORY = re.compile(r'Repository "(?P<repo>[^"]{1,200})" not found')
# The daemon's words for a missing tag or digest: Docker's own, and containerd's resolver (the reference repeated
# before "not found"). The retired v1 protocol's words say the same, but v1 registries said them to callers who could
# not read the image too.
_MANIFEST_NOT_FOUND = re.compile(r"\bmanifest for \S{1,600} not found|\bmanifest unknown"
                                 r"|failed to resolve reference \"(?P<ref>[^\"]{1,600})\": (?P=ref): not found")
_V1_NOT_FOUND = re.compile(r"\bTag \S{1,200} not found in repository \S|\bError: image \S{1,600} not found")


def _repository_denied(failure: Failure, context: Context) -> str | None:
    """A permission denied on a repository: in Google's words, or in ErrorInfo's metadata (IAM_PERMISSION_DENIED)."""
    found = _ANONYMOUS.search(failure.message) or _PERMISSION.search(failure.message)
    if found:
        anonymous, permission, resource = found.re is _ANONYMOUS, found["perm"], found["res"]
    elif failure.reason == "IAM_PERMISSION_DENIED" and failure.get("permission") and failure.get("resource"):
        anonymous, permission, resource = False, failure.get("permission"), failure.get("resource")
    else:
        return None
    if not permission.startswith("artifactregistry.") or "/repositories/" not in resource:
        return _other_resource_denied(permission, resource, failure, context)
    named = _resource(resource, failure, context)
    # The text's own request names IMAGE's repository, and the denial another one: a virtual or remote repository's
    # upstream. (A project may be written as its ID in one and its number in the other: only names that differ count.)
    asked = google_registries.repository_of(failure.get("host"), failure.get("path")) if failure.get("path") else None
    if named and asked and not anonymous and (
            (named.location, named.repository) != (asked.location, asked.repository)
            or (not named.project.isdigit() and not asked.project.isdigit() and named.project != asked.project)):
        own = asked
        return (f"Artifact Registry denied {permission} on {resource}, a repository IMAGE does not name ({said(failure)}): "
                f"most likely {own.repository} is a virtual or remote repository reading it, which Artifact Registry's "
                f"service agent of project {own.project} (service-PROJECT_NUMBER@gcp-sa-artifactregistry.iam.gserviceaccount.com) "
                f"does, not {context.identity}: grant that agent roles/artifactregistry.reader on {named.resource}.")
    repo = named
    role = "writer" if "upload" in permission else "reader"
    if repo:
        exists = f"`{gcloud.repository('describe', repo.repository, repo.project, repo.location)}`"
        grant = f"`{_grant(repo, f'roles/artifactregistry.{role}', context)}`"
    else:
        exists, grant = "gcloud artifacts repositories describe", f"grant roles/artifactregistry.{role} on it"
    if anonymous:
        own_host = (repo.repository if repo.repository.endswith("gcr.io") else f"{repo.location}-docker.pkg.dev") if repo else (
            "LOCATION-docker.pkg.dev")
        if own_host == context.image.host:  # IMAGE names the repository's own host: something on the way dropped them
            return (f"Artifact Registry received no credentials for {context.image.display} (Google: {said(failure)}), though "
                    f"the pipe hands the Docker daemon a registry token for {own_host}: a proxy or registry mirror between the "
                    f"docker service and Google dropped the Authorization header; put {own_host} in NO_PROXY (and no mirror "
                    "for it), and pull again. No grant helps a request that carried no credentials.")
        return (
            f"Artifact Registry received no credentials for {context.image.display} (Google: {said(failure)}): the pipe "
            f"hands the Docker daemon a registry token for {context.image.host} only, so the pull reached the registry by "
            f"another host or through a mirror or proxy that drops credentials; IMAGE must name the repository's own host "
            f"({own_host}). Check the repository exists with {exists}, and that {context.identity} may read it: {grant}.")
    return (
        f"{context.identity} may not pull {context.image.display}: Artifact Registry denied {permission} on "
        f"{resource}, which also means the repository may not exist. Check it with {exists}: NOT_FOUND means fix the "
        f"project, location or repository in IMAGE; if it exists, grant it with {grant} ({PROPAGATION}).")


def _other_resource_denied(permission: str, resource: str, failure: Failure, context: Context) -> str:
    """A denial on something other than an Artifact Registry repository: the key that encrypts it, the bucket behind it."""
    if permission.startswith("cloudkms."):
        return _cmek(failure, context, f"Artifact Registry's service agent may not use the key {resource}")
    return (f"The pull was refused {permission} on {resource} ({said(failure)}), which is not IMAGE's repository: "
            f"{context.identity} (or the service that reads it for the registry) needs a role that holds {permission} on "
            f"that resource; no Artifact Registry role on IMAGE's repository grants it.")


def _cmek(failure: Failure, context: Context, what: str) -> str:
    """The repository is encrypted with a customer-managed key (CMEK) the registry cannot use."""
    gone = "DESTROYED" in failure.message or "destroyed" in failure.message
    fix = ("the key version is destroyed, so the data under it is gone: push the image again to a repository with a live "
           "key and change IMAGE" if gone else
           "the key's administrator must enable the key version, and grant Artifact Registry's service agent "
           "(service-PROJECT_NUMBER@gcp-sa-artifactregistry.iam.gserviceaccount.com) roles/cloudkms.cryptoKeyEncrypterDecrypter on it")
    return (f"{context.image.display} is in a repository encrypted with a customer-managed Cloud KMS key, and {what} "
            f"({said(failure)}): no role for {context.identity} fixes this; {fix}.")


_KMS_KEY = re.compile(r"Cloud KMS key|cryptoKeys?/|cryptoKeyVersions/|\bCMEK\b", re.I)
_TAG_GONE = re.compile(r"\bTag \S{1,200} was deleted or has expired|\btag \S{1,200} (?:was|has been) deleted", re.I)


def _registry_says_why(failure: Failure, context: Context) -> str | None:
    """An UNKNOWN (or uncoded) refusal whose words state the cause: a key, or a tag a cleanup policy removed."""
    if _KMS_KEY.search(failure.message):
        return _cmek(failure, context, "the registry could not use the key")
    if _TAG_GONE.search(failure.message):
        listing = f" (`{found}` lists what exists)" if (found := gcloud.images_list(context.image.host, context.image.path)) else ""
        return (f"The tag in IMAGE {context.image.display} was deleted, by a person or a cleanup policy ({said(failure)}): "
                f"point IMAGE at a tag or digest that exists{listing}, or push the image again.")
    return None


def _resource(resource: str, failure: Failure, context: Context) -> google_registries.Repository | None:
    """projects/P/locations/L/repositories/R, with the project from the text's image or IMAGE where Google redacted it;
    None when a part is no name gcloud takes (a placeholder such as <repo>)."""
    parts = resource.split("/")
    known = image_repository(failure, context)
    if len(parts) < 6:
        return known
    project = parts[1] if google_registries.is_project(parts[1]) else known.project if known else None
    found = google_registries.Repository(project or "", parts[3], parts[5])
    return found if project and google_registries.is_repository(found) else known


def _legacy_denied(failure: Failure, context: Context) -> str | None:
    """Container Registry's "Permission denied for <tag>": the tag or repository may be missing, or the caller may not read it."""
    if failure.code != "DENIED" and "pull access denied" not in failure.message:
        return None
    repo = image_repository(failure, context)
    if repo is None:
        return None
    host, path = failure.get("host") or context.image.host, failure.get("path") or context.image.path
    listing = f" (`{found}` lists what does)" if (found := gcloud.images_list(host, path)) else ""
    return (
        f"{_registry_name(host)} refused {path} in project {repo.project} (Google: {said(failure)}), which has two causes "
        f"it does not tell apart: IMAGE names an image or tag that does not exist{listing}, or {context.identity} may not "
        f"read it: `{_grant(repo, 'roles/artifactregistry.reader', context)}` ({PROPAGATION}).")


def _grant(repo: google_registries.Repository, role: str, context: Context) -> str:
    return gcloud.repository("add-iam-policy-binding", repo.repository, repo.project, repo.location,
                             f"--role={role}", f"--member={gcloud.arg(context.identity)}")


_REFUSED = re.compile(r"\b(?:unauthori[sz]ed|denied|forbidden|authentication required|no basic auth credentials"
                      r"|not authori[sz]ed)\b", re.I)


def _outside_google(failure: Failure, context: Context) -> str | None:
    """A registry outside Google (reached because REGISTRIES lists it) refused the pull, in whatever words: what it
    refused is the credential the pipe got there with a Google token, unless the image is not there at all. Google's
    own words (a permission on a projects/… resource) were read by the rules before."""
    host = context.image.host
    refused = failure.code in ("UNAUTHORIZED", "DENIED") or failure.status in (401, 403) or _REFUSED.search(failure.message)
    if google_registries.is_google(host) or not refused:
        return None
    return (
        f"{host} refused the pull of {context.image.display} ({said(failure)}): {host} is not a Google registry, so most "
        f"likely it refused the credential the pipe got from it with the Google token, which only a registry built to take "
        f"Google tokens accepts; if the image is public, or the registry has its own login, pull it without this pipe "
        f"(remove {host} from REGISTRIES), or push the image to Artifact Registry; otherwise check that IMAGE names an "
        f"image {host} has{google_registries.mistyped(host)}.")


def _unauthorized(failure: Failure, context: Context) -> str | None:
    if failure.code != "UNAUTHORIZED" and failure.status != 401 and "unauthorized" not in failure.message.lower():
        return None
    host = context.image.host
    if "permission" in failure.message.lower():  # Container Registry's "you don't have the needed permissions"
        repo = image_repository(failure, context)
        grant = f": `{_grant(repo, 'roles/artifactregistry.reader', context)}`" if repo else ""
        return (
            f"The registry refused {context.identity} for {context.image.display} ({said(failure)}): most likely it may "
            f"not read the repository (grant roles/artifactregistry.reader{grant}); if it may, the token was refused: keep "
            f"{CLOUD_PLATFORM} in ACCESS_TOKEN_SCOPES.")
    if "No valid credential" in failure.message:  # Artifact Registry's word for a request it saw no credential on
        return (
            f"The registry saw no valid credential on the pull of {context.image.display} ({said(failure)}): either the "
            f"pull token did not reach it (IMAGE must name the repository's own host), or the repository admits only "
            f"readers and {context.identity} needs roles/artifactregistry.reader on it ({PROPAGATION}).")
    federated = context.identity.startswith("principal")
    return (
        f"The registry did not accept the Google access token for {context.image.display} ({said(failure)}): "
        + (f"with direct federation the token is {context.identity}'s, which {host} accepts only where that principalSet "
           "has roles/artifactregistry.reader, or set SERVICE_ACCOUNT to pull as a service account; " if federated else "")
        + f"keep {CLOUD_PLATFORM} in ACCESS_TOKEN_SCOPES; an expired token is replaced when you rerun the step, and an "
        "exported one lasts ACCESS_TOKEN_LIFETIME (1 hour unless raised) for the commands after the pipe.")


def _missing(failure: Failure, context: Context) -> str | None:
    image = context.image
    if missing := _NO_REPOSITORY.search(failure.message):
        repo = image_repository(failure, context)
        named = google_registries.Repository(repo.project, repo.location, missing["repo"]) if repo else None
        check = (f", and check with `{gcloud.repository('describe', named.repository, named.project, named.location)}`"
                 if named and google_registries.is_repository(named) else "")
        return (
            f"Artifact Registry has no repository {missing['repo']} in {the_project(repo.project if repo else None)}"
            f"{f', location {repo.location}' if repo else ''} (Google: {said(failure)}): IMAGE {image.display} names a "
            f"repository that does not exist there; fix the repository in IMAGE or create the repository{check}.")
    # The registry's codes, or the daemon's "manifest for … not found": "not found" alone may be anything (a project,
    # a credential helper, a host), which the tag does not fix.
    v1 = _V1_NOT_FOUND.search(failure.message)
    if failure.code in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN") or _MANIFEST_NOT_FOUND.search(failure.message) or v1:
        listing = f": `{found}` lists what exists" if (found := gcloud.images_list(image.host, image.path)) else ""
        hidden = (f"; if it exists, the v1 protocol said the same to a caller who may not read it: {context.identity} needs "
                  f"roles/artifactregistry.reader, and ACCESS_TOKEN_SCOPES must keep {CLOUD_PLATFORM}" if v1 else "")
        return f"Image {image.display} was not found: check the tag or digest in IMAGE{listing}{hidden} (Google: {said(failure)})."
    if failure.code in ("BLOB_UNKNOWN", "MANIFEST_BLOB_UNKNOWN"):
        return (f"The registry lists {image.display} but lacks one of its layers (Google: {said(failure)}): most likely the "
                "image was deleted in part or pushed incompletely, so push it again or point IMAGE at another tag or digest; "
                "if the docker service pulls through a proxy or registry mirror, it may not follow Artifact Registry's layer "
                f"download redirect: put {image.host} in NO_PROXY.")
    if failure.code in ("NAME_INVALID", "TAG_INVALID") or "invalid reference format" in failure.message or "must match" in failure.message:
        return (f"The registry refused the name {image.display} (Google: {said(failure)}): fix IMAGE; on Artifact Registry "
                "it is LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE[:TAG], lowercase.")
    return None


def _content_refused(failure: Failure, context: Context) -> str | None:
    """The OCI codes about the image's content rather than its name or access: what was stored, or what arrived."""
    image = context.image.display
    if failure.code in ("DIGEST_INVALID", "SIZE_INVALID"):
        return (f"What the registry served for {image} did not match its digest or size ({said(failure)}): something "
                "between the step and the registry changed it on the way (a proxy or registry mirror), or the image is "
                "stored damaged: rerun the step; if it happens again, push the image again or point IMAGE at another digest.")
    if failure.code in ("MANIFEST_INVALID", "MANIFEST_UNVERIFIED"):
        return (f"The registry holds a manifest for {image} that cannot be read ({said(failure)}): push the image again "
                "with a current docker or buildx, or point IMAGE at another tag or digest.")
    if failure.code == "UNSUPPORTED":
        return (f"The registry does not support this pull of {image} ({said(failure)}): most likely IMAGE names a "
                "repository that is not a Docker repository (Artifact Registry's describe shows its format), or the "
                "image is in a manifest format this registry does not serve: check IMAGE.")
    return None


def _token_mismatch(failure: Failure, context: Context) -> str | None:
    """The registry refused the pull token its own token service issued for IMAGE's repository."""
    if "does not match bearer token" not in failure.message:
        return None
    return (
        f"The registry refused the pull token its token service had just issued for {context.image.display} (Google: "
        f"{said(failure)}), even after retries with fresh tokens: most likely a passing fault on the registry's side, so "
        f"rerun the step ({RETRY_BUDGET}); if it keeps failing, IMAGE may name the repository by an alias (gcr.io's "
        "google_containers is google-containers): use the repository's own name.")


def _storage(failure: Failure, context: Context) -> str | None:
    """A layer served from Cloud Storage (Container Registry's buckets) was refused: by Cloud Storage's code."""
    code = failure.get("storage_code")
    if not code:
        return None
    image = context.image.display
    if code in ("NoSuchKey", "NoSuchBucket", "NotFound"):
        return (f"Cloud Storage has no longer one of {image}'s layers ({code}; Google: {said(failure)}): the image was deleted "
                "in part or its bucket removed; push the image again, or point IMAGE at another tag or digest.")
    if code in ("AccessDenied", "Forbidden", "InsufficientPermissions") or "nonymous" in failure.message:
        how = "without credentials" if "nonymous" in failure.message else f"as {context.identity}"
        return _layers_refused(f"Cloud Storage refused one of {image}'s layers, asked {how}", failure, context, in_bucket=True)
    return None


def _layer_denied(failure: Failure, context: Context) -> str | None:
    """The manifest was read, then a layer was refused: the storage behind the registry, not IMAGE's name. A web page
    (Google's front end refusing the client, a proxy) is no IAM answer, and no role fixes it."""
    if failure.get("fetching") != "layer" or not (failure.status == 403 or failure.code == "DENIED"):
        return None
    if failure.get("answer") == "web page":
        return None
    in_bucket = google_registries.is_container_registry(context.image.host)  # Container Registry's layers: Cloud Storage
    return _layers_refused(f"The registry served {context.image.display}'s manifest but refused one of its layers",
                           failure, context, in_bucket)


def _layers_refused(what: str, failure: Failure, context: Context, in_bucket: bool) -> str:
    """Layers in a Cloud Storage bucket (Container Registry's) need the bucket's reader role; Artifact Registry's, the repository's."""
    repo = image_repository(failure, context)
    if not in_bucket:
        grant = f"`{_grant(repo, 'roles/artifactregistry.reader', context)}`" if repo else "grant it roles/artifactregistry.reader"
        return (f"{what} (Google: {said(failure)}): {context.identity} needs to read the whole repository: {grant} "
                f"({PROPAGATION}); and check IMAGE's host is the repository's own.")
    return (
        f"{what} (Google: {said(failure)}): the layers sit in Container Registry's Cloud Storage bucket of "
        f"{the_project(repo.project if repo else None)} (artifacts.PROJECT.appspot.com, or LOCATION.artifacts.PROJECT.appspot.com); "
        f"grant {context.identity} roles/storage.objectViewer on that bucket (or roles/artifactregistry.reader once the "
        "project uses Artifact Registry), and check IMAGE's host is the repository's own.")


def _storage_permission(failure: Failure, context: Context) -> str | None:
    """Container Registry's token exchange needs the bucket's permissions: "Caller does not have permission 'storage.…'"."""
    found = re.search(r"does not have (?:permission )?'?(?P<perm>storage\.[\w.]{1,60})", failure.message)
    if not found:
        return None
    repo = image_repository(failure, context)
    return (
        f"{context.identity} lacks {found['perm']} on the Cloud Storage bucket behind Container Registry in "
        f"{the_project(repo.project if repo else None)} (Google: {said(failure)}): grant it roles/storage.objectViewer on that "
        "bucket (artifacts.PROJECT.appspot.com, or LOCATION.artifacts.PROJECT.appspot.com), or move the image to "
        "Artifact Registry and grant roles/artifactregistry.reader.")


_SCHEMA_1 = re.compile(r"schema 1|schema1|Image Format v1", re.I)


def _schema_1(failure: Failure, context: Context) -> str | None:
    """Docker no longer pulls images in its first manifest format: the image must be pushed again, nothing else helps."""
    if not _SCHEMA_1.search(failure.message):
        return None
    return (f"{context.image.display} is in Docker's retired image format (manifest schema 1), which the docker service no "
            f"longer pulls (Google: {said(failure)}): push the image again with a current docker or buildx (schema 2 or "
            "OCI) and point IMAGE at it.")


# An artifact that is no container image (an attestation, a signature, a Helm chart, …), by its media type.
_NOT_AN_IMAGE = re.compile(r"application/vnd\.(?!docker\.(?:distribution|container)|oci\.image)(?P<type>[a-z0-9][\w.+-]{0,100})")
_NO_PLATFORM = re.compile(r"no matching manifest for|cannot be used on this platform|no match for platform in manifest"
                          r"|does not match the specified platform")


def _not_an_image(failure: Failure, context: Context) -> str | None:
    if not (found := _NOT_AN_IMAGE.search(failure.message)):
        return None
    return (f"IMAGE {context.image.display} names an artifact of type application/vnd.{found['type']}, not a container "
            f"image ({said(failure)}): point IMAGE at the image itself (its tag, or the digest of its image index or of its "
            "linux/amd64 manifest), not at an attestation, a signature or a chart stored beside it.")


def _platform(failure: Failure, context: Context) -> str | None:
    if not _NO_PLATFORM.search(failure.message):
        return None
    return (f"{context.image.display} has no variant for the docker service's platform (Google: {said(failure)}): "
            "Bitbucket's cloud steps are linux/amd64; push a linux/amd64 (or multi-platform) image and point IMAGE at it.")


def _legacy_v1(failure: Failure, context: Context) -> str | None:
    if "v1 Registry API is disabled" not in failure.message and failure.status != 412:
        return None
    if failure.status == 412 and google_registries.is_container_registry(failure.get("host") or context.image.host):
        return gcr_shutdown(failure, context)
    if failure.status == 412:
        return None
    image = context.image
    check = f" (`{found}`)" if (found := gcloud.images_list(image.host, image.path)) else ""
    return (
        f"The registry has no image at {image.display} (Google: {said(failure)}): the daemon fell back to the retired v1 "
        f"protocol because the v2 lookup failed. Most likely IMAGE names an image or tag that does not exist; check it"
        f"{check}; if it does exist, the registry had a passing fault that outlasted the retries: rerun the step "
        f"({RETRY_BUDGET}).")


def _token_fetch(failure: Failure, context: Context) -> str | None:
    """The daemon's own request for a registry token failed: anonymous means it had no credentials for that host."""
    if "anonymous token" not in failure.message:
        return None
    host = failure.get("host") or context.image.host
    return (
        f"The registry refused an anonymous pull of {context.image.display} (Google: {said(failure)}): the credentials did "
        f"not reach {host}, which happens when the image (or a base image it names) is in another project or on another "
        f"host; IMAGE must name the repository's own host, and {context.identity} needs roles/artifactregistry.reader on "
        "every repository the image comes from.")


# Go's words for the daemon's first request to a registry (`Get "https://HOST/v2/": …`), before any answer.
_FIRST_CONTACT = re.compile(r'https://(?P<host>[a-z0-9.-]{1,253}(?::[0-9]{1,5})?)/v2/"?: ')
_DNS_LOOKUP = re.compile(r"\blookup [a-z0-9.-]{1,253}(?: on |: )")  # Go's resolver: the name was never turned into an address


def _nothing_answers(failure: Failure, context: Context) -> str | None:
    """No HTTP answer at all, on every try, from the first request to IMAGE's host when that host is not Google's:
    most likely nothing there is the registry meant (a mistyped host answers, or drops, whatever it is sent), so a
    larger retry budget is no fix. Google's hosts, a layer download and an answer that came are transient elsewhere."""
    first = _FIRST_CONTACT.search(failure.message)
    host = context.image.host
    if (not first or first["host"] != host.lower() or failure.status or failure.code or failure.transient != retry.NETWORK
            # a registry for sure, or the step's DNS server failing: transient
            or google_registries.is_known_registry(host) or _DNS_LOOKUP.search(failure.message)):
        return None
    return (
        f"Nothing at {host} answered as a registry on any try ({said(failure)}): check the registry host in IMAGE and "
        f"REGISTRIES{google_registries.mistyped(host) or ' for a typo'}; if it is right, the step's network cannot reach "
        f"https://{host}/v2/ (a firewall, or a proxy the docker service needs: HTTPS_PROXY).")


_NO_SUCH_HOST = re.compile(r"lookup (?P<host>[a-z0-9.-]{1,253})(?: on \S{1,80})?: no such host")


def _unresolved(failure: Failure, context: Context) -> str | None:
    """`no such host`: the step's DNS answered that the name does not exist. For IMAGE's own host outside Google and
    the well-known registries, that is the host to fix (or a name only a private network resolves); for Google's and
    the layer hosts, which exist, the step's DNS failed for a while."""
    found = _NO_SUCH_HOST.search(failure.message)
    if not found:
        return None
    host = found["host"]
    own = host == context.image.host.split(":")[0]
    if own and not google_registries.is_known_registry(host):
        return (f"The registry host {host} does not resolve ({said(failure)}): check the host in IMAGE and REGISTRIES"
                f"{google_registries.mistyped(host) or ' for a typo'}; a name only your private network resolves needs a "
                "self-hosted runner inside it.")
    located = google_registries.repository_of(host, context.image.path) if own else None
    if located and host not in google_registries.MULTI_REGION_HOSTS:  # Google's hosts resolve: a location may not exist
        return (f"The step could not resolve {host} ({said(failure)}): most likely {located.location} is no location "
                f"Artifact Registry serves, so fix the host in IMAGE (`{gcloud.artifact_locations(located.project)}` lists them); if it "
                f"is one, the step's DNS failed for a while: rerun the step ({RETRY_BUDGET}).")
    typo = f"; if {host} is mistyped, fix the host in IMAGE (Artifact Registry's are LOCATION-docker.pkg.dev)" if own else ""
    return (
        f"The step could not resolve {host} (Google: {said(failure)}): most likely the step's DNS or network failed, "
        f"not your configuration; rerun the step ({RETRY_BUDGET}){typo}.")


# Go's TLS and proxy errors: the connection was made but could not be trusted or was not TLS. Retrying never helps.
_UNTRUSTED = re.compile(r"x509: |tls: failed to verify|certificate signed by unknown authority|certificate has expired"
                        r"|certificate is (?:not )?valid for|tls: bad certificate")
_PLAIN_HTTP = re.compile(r"server gave HTTP response to HTTPS client|first record does not look like a TLS handshake")
# A proxy's refusal: Go's `proxyconnect`, or the bare reason phrase Go's transport makes of a CONNECT answered with
# anything but 200 (`Head "<url>": Forbidden`, `…: Service Unavailable`): whatever the status, a registry's own answer
# always carries a code or a status number. Any standard phrase, and the two proxies commonly send.
_REASON_PHRASES = sorted({status.phrase for status in HTTPStatus if status >= 300} | {"Not Allowed", "Access Denied"}, key=len, reverse=True)
_PROXY = re.compile(r"proxyconnect tcp|Proxy Authentication Required"
                    rf"|https?://[^\s\"]{{1,2000}}\"?: (?P<phrase>{'|'.join(map(re.escape, _REASON_PHRASES))})\s*$")
_SERVER_ERROR_PHRASES = {status.phrase for status in HTTPStatus if status >= 500}
_TLS_ALERT = re.compile(r"remote error: tls: (?P<alert>[a-z ]{3,60})")  # the peer's alert: nothing was distrusted here
_WRONG_NAME = re.compile(r"certificate is valid for (?P<names>[^\n]{1,300}?), not \S{1,253}")
_CLOCK = re.compile(r"certificate has expired or is not yet valid|certificate is not yet valid")


def _connection_setup(failure: Failure, context: Context) -> str | None:
    """The step's network path to the registry, not the registry or IAM: a proxy or TLS inspection in between, or a
    host that does not speak TLS. Google's registries always serve a publicly trusted certificate over https."""
    text = failure.message
    host = failure.get("host") or context.image.host
    if "proxyconnect tcp" in text and _PLAIN_HTTP.search(text):
        return (f"HTTPS_PROXY names its proxy with https://, but the proxy speaks plain http ({said(failure)}): set "
                "HTTPS_PROXY (in the step and the docker service) to http://HOST:PORT; the connection to the registry is "
                "still TLS inside it.")
    if proxy := _PROXY.search(text):
        if proxy["phrase"] in _SERVER_ERROR_PHRASES:  # the proxy's own trouble, or its way to the registry's
            return (f"A proxy between the step and {host} answered {proxy['phrase']} instead of connecting ({said(failure)}): "
                    f"either it could not reach {host} for a while, which a rerun fixes ({RETRY_BUDGET}), or it does not "
                    "let the step reach it at all: check HTTPS_PROXY and NO_PROXY in the step and the docker service.")
        return (f"The proxy between the step and {host} refused the connection ({said(failure)}): check HTTPS_PROXY and "
                "NO_PROXY in the step and the docker service, and the proxy's credentials; Google's registries need no proxy "
                "on Bitbucket Cloud.")
    if alert := _TLS_ALERT.search(text):
        return (f"The TLS handshake with {host} was aborted by the other side (tls: {alert['alert']}; {said(failure)}): a "
                "firewall, TLS-inspecting proxy or old proxy between the step and the host breaks TLS; exempt the host from "
                "inspection, or check HTTPS_PROXY and NO_PROXY; Google's hosts speak current TLS, so a one-off may pass on "
                "a rerun.")
    if named := _WRONG_NAME.search(text):
        return (f"The certificate presented for {host} is {named['names'][:120]}'s ({said(failure)}): something between the "
                f"step and {host} (a TLS-inspecting proxy) answers in its place; exempt {host} from inspection or check "
                "HTTPS_PROXY and NO_PROXY; Bitbucket's docker service cannot be given that proxy's CA.")
    if not google_registries.is_google(host) and (outside := _outside_google_tls(host, failure)):
        return outside
    if _CLOCK.search(text):
        return (f"The Docker daemon found {host}'s certificate expired or not yet valid ({said(failure)}): Google's "
                "certificates are current, so most likely the runner's clock is wrong (check `date` and NTP on a self-hosted "
                "runner); otherwise a TLS-inspecting proxy between the step and Google presents an out-of-date certificate.")
    if _UNTRUSTED.search(text):
        return (f"The Docker daemon did not trust the certificate {host} presented ({said(failure)}): Google's registries "
                "serve publicly trusted certificates, so something between the step and Google (a TLS-inspecting proxy, "
                "check HTTPS_PROXY, or a firewall on a self-hosted runner) replaced it, or IMAGE names a host that is not Google's; pull directly, or "
                f"install that proxy's CA for the daemon (/etc/docker/certs.d/{host}/ca.crt).")
    if _PLAIN_HTTP.search(text):
        return (f"{host} does not speak https ({said(failure)}): Google's registries always do, so IMAGE names a host or port "
                "that is not the registry's, or a proxy answers in its place; fix the host in IMAGE.")
    return None


def _not_the_registrys_page(failure: Failure, context: Context) -> str | None:
    """A web page refusing the request where a registry or token service answers: Google's front end refusing the
    client before the registry saw any credential, or a proxy or web filter in between. Neither is about grants. A
    5xx or throttling page is transient trouble instead."""
    if failure.get("answer") != "web page" or failure.transient or not google_registries.is_google(context.image.host):
        return None
    if failure.get("page") == "Google's":
        if failure.get("fetching") == "layer":
            return None  # the layer rules say the same, for the storage behind the registry
        return (f"Google's front end refused this client with its own web page ({said(failure)}), before "
                f"{context.image.host} saw any credential: no grant or variable changes that; it judges the request's "
                "address or shape, so check that IMAGE names the registry's own host, and run the step on another "
                "runner if the address is refused.")
    return (f"Something between the step and {context.image.host} answered with its own web page ({said(failure)}): a "
            "proxy or web filter blocks or replaces the registry's answers, which no IAM grant changes; check HTTPS_PROXY "
            f"and NO_PROXY in the step and the docker service, or have {context.image.host} allowed there.")


def _outside_google_tls(host: str, failure: Failure) -> str | None:
    """A registry outside Google whose https the docker service cannot use: its own certificate, out of date or
    untrusted, or no TLS at all. None for any other failure."""
    text = failure.message
    if _CLOCK.search(text):
        return (f"{host}'s certificate is expired or not yet valid ({said(failure)}): that registry's owner must renew it; "
                "if it is current, the runner's clock is wrong.")
    if _PLAIN_HTTP.search(text):
        what = "serves plain http where the Docker daemon asks for https"
    elif _UNTRUSTED.search(text):
        what = "presents a certificate the Docker daemon does not trust (most likely the registry's own or a private CA)"
    else:
        return None
    return (f"{host} {what} ({said(failure)}): Bitbucket's docker service takes no CA and no insecure registry, so "
            f"give {host} a publicly trusted certificate over https, or pull on a self-hosted runner whose daemon trusts "
            f"it (/etc/docker/certs.d/{host}/ca.crt); if a TLS-inspecting proxy is in between, check HTTPS_PROXY and NO_PROXY.")


# Failures on the daemon's own side, after the download: nothing about the registry or the credentials.
_UNMAPPABLE_ID = re.compile(r"container id \d{1,20} cannot be mapped to a host id"
                            r"|failed to register layer:[^\n]{0,300}?lchown [^:\n]{1,300}: invalid argument", re.I)
_DEVICE_NODE = re.compile(r"mknod \S{1,300}: operation not permitted", re.I)
_XATTR = re.compile(r"lsetxattr (?P<attr>[\w.]{1,60}) \S{1,300}: operation not supported", re.I)
_TOO_DEEP = re.compile(r"max depth exceeded", re.I)
_ZSTD = re.compile(r"zstd|no processor for media-type|archive/tar: invalid tar header|mismatched image rootfs and manifest layers", re.I)
_NO_SPACE = re.compile(r"no space left on device", re.I)
_LAYER_VERIFICATION = re.compile(r"filesystem layer verification failed|failed size validation|unexpected commit digest", re.I)


def _daemon_side(failure: Failure, context: Context) -> str | None:
    image, text = context.image.display, failure.message
    if _UNMAPPABLE_ID.search(text):
        return (f"{image} has files owned by a user or group ID above 65535 ({said(failure)}): Bitbucket's docker service "
                "runs with user namespaces and cannot map them; rebuild the image IMAGE names with every file owned by IDs of "
                "65535 or less (chown in the Dockerfile, or build with --chown).")
    if _DEVICE_NODE.search(text):
        return (f"{image} contains device files, which Bitbucket's docker service cannot create: it runs with user "
                f"namespaces ({said(failure)}); rebuild the image IMAGE names without device nodes (nothing under /dev in "
                "its layers).")
    if xattr := _XATTR.search(text):
        return (f"{image} sets the file attribute {xattr['attr']} (file capabilities or an image builder's overlay "
                f"marks), which the docker service's storage cannot hold ({said(failure)}): rebuild the image IMAGE names "
                "with docker build or buildx, without setcap on its files.")
    if _TOO_DEEP.search(text):
        return (f"{image} has more layers than the Docker daemon stacks (about 125; {said(failure)}): rebuild the image "
                "IMAGE names with fewer layers (combine RUN steps, or squash it).")
    if _ZSTD.search(text) and "layer" in text.lower() or "no processor for media-type" in text:
        return (f"{image}'s layers are in a compression or format this Docker daemon cannot unpack, most likely zstd "
                f"({said(failure)}): push the image again with gzip layers (docker buildx --output "
                "type=image,compression=gzip,force-compression=true) and point IMAGE at it.")
    if _NO_SPACE.search(text):
        return (f"The docker service ran out of disk while storing {image} ({said(failure)}): make the image IMAGE names smaller, or "
                "run the step where the daemon has more disk (a larger step size, or a self-hosted runner).")
    if _LAYER_VERIFICATION.search(text):
        return (f"A layer of {image} arrived different from its digest ({said(failure)}): something between the step and "
                "the registry changed it (a proxy or registry mirror), or the image is stored damaged: rerun the step; if "
                "it happens again, push the image again or point IMAGE at another digest.")
    return None


_UPSTREAM = re.compile(r"from upstream", re.I)


def _upstream(failure: Failure, context: Context) -> str | None:
    """An Artifact Registry remote repository relays its upstream's refusal (Docker Hub's pull limit, its auth):
    neither Google's quota nor the identity's grants, but the repository's upstream settings."""
    repo = image_repository(failure, context)
    if not _UPSTREAM.search(failure.message) or not google_registries.is_google(context.image.host):
        return None
    throttled = failure.code == "TOOMANYREQUESTS" or failure.transient == retry.THROTTLED or "toomanyrequests" in failure.message.lower()
    settings = (f"`{gcloud.repository('describe', repo.repository, repo.project, repo.location)}` shows its upstream"
                if repo else "the remote repository's upstream settings")
    return (f"The remote repository behind {context.image.display} could not fetch it from its upstream ({said(failure)}): "
            + ("the upstream is limiting pulls (Docker Hub's pull limit, for one), which no Google quota raises: give the "
               "remote repository upstream credentials, or rerun once the limit resets; " if throttled else
               "check that the image and tag IMAGE names exist upstream, and the repository's upstream credentials; ")
            + f"{settings}.")


_REGISTRY_RULES = (_not_the_registrys_page, _upstream, _daemon_side, _registry_says_why, _storage, _storage_permission, _repository_denied, _layer_denied,
                   _legacy_v1, _token_fetch, _token_mismatch, _schema_1, _platform, _not_an_image,
                   _missing, _content_refused, _outside_google, _legacy_denied, _unauthorized, _unresolved, _connection_setup, _nothing_answers)
