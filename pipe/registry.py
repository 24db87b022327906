"""Which registries may receive a Google access token, and the credentials handed to the daemon."""

from pipe.errors import PipeError
from pipe.parsers import Image

GOOGLE_REGISTRY_SUFFIXES = (".pkg.dev", ".gcr.io")  # *-docker.pkg.dev, *.pkg.dev, us.gcr.io, ...
GOOGLE_REGISTRY_HOSTS = ("gcr.io",)


def is_google(host: str) -> bool:
    name = host.lower()
    # A port means it is not Google's public endpoint (which is :443 only).
    return ":" not in name and (name in GOOGLE_REGISTRY_HOSTS or name.endswith(GOOGLE_REGISTRY_SUFFIXES))


def check_allowed(image: Image, extra_registries: tuple[str, ...]) -> None:
    """Refuse before any token exists to leak: only Google's registries and the user's REGISTRIES."""
    if is_google(image.host) or image.host in extra_registries:
        return
    raise PipeError(
        f"IMAGE {image.reference} is on {image.host}, which is not a Google registry, so the pipe will not send it "
        f"a Google access token: use an Artifact Registry image, or add '{image.host}' to REGISTRIES if that host "
        "really accepts Google tokens."
    )


def auth_config(access_token: str) -> dict:
    """Per-pull credentials for the daemon (Artifact Registry's documented user name); never written to disk."""
    return {"username": "oauth2accesstoken", "password": access_token}
