"""One reading of a URL for every decision about where a token may go.

Python's urllib, urllib3 (what requests connects with) and Go's net/url (what the Docker daemon connects
with) disagree on odd forms: a backslash, userinfo, percent-encoded or non-ASCII hosts, IPv4 shorthand
such as `127.1` or `0x7f000001`, a trailing dot. Rather than guess which reading the connecting client will use, only
forms that every client reads the same way are accepted; anything else is refused (`parse` returns None).
"""

import ipaddress
import re
import socket
from dataclasses import dataclass

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_URL_RE = re.compile(
    r"(?P<scheme>https?)://"
    rf"(?P<host>{_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<path>/[A-Za-z0-9._~!$&'()*+,;=:@/%-]*)?"
    r"(?:\?(?P<query>[A-Za-z0-9._~!$&'()*+,;=:@/%?-]*))?",
)
_PERCENT_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")  # a lone '%' is read differently by different parsers
_LOOPBACK_NAMES = {"localhost"}


@dataclass(frozen=True)
class Url:
    scheme: str  # lowercase: http or https
    host: str  # lowercase DNS name, dotted-quad IPv4, or [IPv6]
    port: int | None
    path: str
    query: str | None

    @property
    def netloc(self) -> str:
        """host[:port], as REGISTRIES entries and Docker's registry names are written."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.netloc}"

    def __str__(self) -> str:
        return self.origin + self.path + (f"?{self.query}" if self.query is not None else "")


def parse(text: str | None) -> Url | None:
    """The URL, or None when it is not a plain http(s) URL that every client reads the same way."""
    if not isinstance(text, str) or not text.isascii():
        return None
    scheme, separator, rest = text.partition("://")
    authority_end = min([i for i in (rest.find("/"), rest.find("?")) if i >= 0], default=len(rest))
    # Scheme and host are case-insensitive everywhere; the path is not.
    match = _URL_RE.fullmatch(scheme.lower() + separator + rest[:authority_end].lower() + rest[authority_end:])
    if not match or _PERCENT_RE.search(text):
        return None
    host = match["host"]
    if not _host_is_unambiguous(host):
        return None
    port = int(match["port"]) if match["port"] else None
    if port is not None and not 1 <= port <= 65535:
        return None
    return Url(match["scheme"], host, port, match["path"] or "", match["query"])


def _host_is_unambiguous(host: str) -> bool:
    if host.startswith("["):
        try:
            return ipaddress.ip_address(host[1:-1]).version == 6
        except ValueError:
            return False
    # An IPv4 address only as the plain dotted quad: glibc's inet_aton (what Python's resolver, and so requests, use)
    # also reads `127.1`, `2130706433`, octal `0177.0.0.1` and hex `0x7f000001` as 127.0.0.1, where Go looks them up
    # as DNS names.
    try:
        socket.inet_aton(host)
    except OSError:
        return not host.rsplit(".", 1)[-1].isdigit()  # `a.1`: a name no resolver agrees on
    try:
        return str(ipaddress.IPv4Address(host)) == host
    except ValueError:
        return False


def is_loopback(host: str | None) -> bool:
    """Local emulators and registries: the only hosts a token may reach over plain http."""
    name = (host or "").lower().strip("[]")
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def may_carry_tokens(url: Url) -> bool:
    return url.scheme == "https" or is_loopback(url.host)


def is_within(host: str, domain: str) -> bool:
    """host is the domain or one of its subdomains (never a look-alike such as evil-googleapis.com)."""
    return host == domain or host.endswith("." + domain)
