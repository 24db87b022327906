"""pipe.urls: one reading of a URL for every decision about where a token may go. Only plain http(s) URLs that
Python's clients and Go's net/url read alike are accepted; the rest is None."""

import ipaddress
import socket
import string
import urllib.parse

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipe import urls
from pipe.urls import Url
from tests.support.budgets import EXAMPLE_DEADLINE_MS
from tests.support.inputs import ADVERSARIAL

LIMITS = settings(max_examples=300, deadline=EXAMPLE_DEADLINE_MS)


@pytest.mark.parametrize("text, scheme, host, port, path, query", [
    ("https://sts.googleapis.com", "https", "sts.googleapis.com", None, "", None),
    ("https://sts.googleapis.com/v1/token", "https", "sts.googleapis.com", None, "/v1/token", None),
    ("HTTPS://STS.GoogleAPIs.COM/V1/Token?Key=Value", "https", "sts.googleapis.com", None, "/V1/Token", "Key=Value"),  # path keeps case
    ("http://127.0.0.1:8765/v1/token", "http", "127.0.0.1", 8765, "/v1/token", None),
    ("http://[::1]:5000/v2/", "http", "[::1]", 5000, "/v2/", None),
    ("https://us-central1-docker.pkg.dev/v2/token?scope=repository:p/r/i:pull&service=us-central1-docker.pkg.dev",
     "https", "us-central1-docker.pkg.dev", None, "/v2/token", "scope=repository:p/r/i:pull&service=us-central1-docker.pkg.dev"),
    ("https://sts.googleapis.com?", "https", "sts.googleapis.com", None, "", ""),
    ("https://a.com/%41%2F", "https", "a.com", None, "/%41%2F", None),
    ("https://xn--bcher-kva.example:443/", "https", "xn--bcher-kva.example", 443, "/", None),
    ("https://a.com:65535", "https", "a.com", 65535, "", None),
    ("http://localhost:5000", "http", "localhost", 5000, "", None),
])
def test_plain_urls_are_read(text, scheme, host, port, path, query):
    assert urls.parse(text) == Url(scheme, host, port, path, query)


def test_the_parts_and_the_text_of_a_url():
    url = urls.parse("HTTPS://Registry.Example.com:5000/v2/token?service=x")
    assert (url.netloc, url.origin, str(url)) == ("registry.example.com:5000", "https://registry.example.com:5000",
                                                  "https://registry.example.com:5000/v2/token?service=x")
    assert urls.parse("https://a.com").netloc == "a.com" and str(urls.parse("https://a.com?")) == "https://a.com?"


@pytest.mark.parametrize("text", [
    None, 5, b"https://a.com", "", "sts.googleapis.com", "//sts.googleapis.com", "ftp://a.com", "file:///etc/passwd", "https:/a.com",
    "https:///a.com", "https://", "https://user@a.com", "https://user:pw@a.com/", "https://a.com@b.com",  # userinfo
    "https://a.com\\@b.com/", "https://a.com\\b", "https:\\\\a.com",  # backslashes: WHATWG reads them as slashes
    "https://a.com#frag", "https://a.com/p#frag", "https://a.com/%zz", "https://a.com/%", "https://a.com/%4",  # a lone '%'
    "https://a.com/pa th", "https://a.com/pa\tth", "https://a.com/pa\nth", "https://a.com/\x00", " https://a.com", "https://a.com ",
    "https://bücher.example", "https://a.com/ä", "https://ｇｏｏｇｌｅａｐｉｓ.com",  # non-ASCII
    "https://a.com.", "https://a..com", "https://.a.com", "https://-a.com", "https://a-.com", "https://a_b.com", "https://a.com:",
    "https://a.com:0", "https://a.com:65536", "https://a.com:99999", "https://a.com:+443", "https://a.com:-1", "https://a.com:443:443",
    "https://" + "a" * 64 + ".com",  # a label of 64 characters
    "https://127.1/", "https://127.0.1/", "https://2130706433/", "https://017700000001/", "https://127.000.0.1/", "https://0x7f.0.0.1/",
    "https://256.0.0.1/", "https://1.2.3.4.5/", "https://a.123/",  # IPv4 shorthand and look-alikes
    "https://[::1", "https://::1/", "https://[127.0.0.1]/", "https://[fe80::1%25eth0]/", "https://[::1]x/", "https://[v1.fe]/",
])
def test_forms_clients_read_differently_are_refused(text):
    assert urls.parse(text) is None


@pytest.mark.parametrize("host", ["0x7f000001", "127.0.0.0x1"])
def test_hexadecimal_ipv4_hosts_are_refused(host):
    assert socket.inet_aton(host) == bytes([127, 0, 0, 1])  # how glibc's getaddrinfo, and so requests, reads it
    assert urls.parse(f"https://{host}/v1/token") is None


@pytest.mark.parametrize("host, loopback", [
    ("localhost", True), ("LOCALHOST", True), ("127.0.0.1", True), ("127.5.6.7", True), ("[::1]", True), ("::1", True),
    ("[0:0:0:0:0:0:0:1]", True), ("localhost.localdomain", False), ("localhost.", False), ("127.1", False), ("10.0.0.1", False),
    ("sts.googleapis.com", False), ("[::]", False), ("0.0.0.0", False), ("", False), (None, False), ("127.0.0.1.nip.io", False),
])
def test_is_loopback(host, loopback):
    assert urls.is_loopback(host) is loopback


@pytest.mark.parametrize("text, carries", [
    ("https://sts.googleapis.com", True), ("https://registry.example.com:5000", True), ("http://127.0.0.1:8765", True),
    ("http://localhost:5000", True), ("http://[::1]:5000", True), ("http://sts.googleapis.com", False), ("http://10.0.0.5:5000", False),
    ("http://127.0.0.1.nip.io", False),
])
def test_tokens_go_over_https_or_to_loopback_only(text, carries):
    assert urls.may_carry_tokens(urls.parse(text)) is carries


@pytest.mark.parametrize("host, domain, within", [
    ("googleapis.com", "googleapis.com", True), ("sts.googleapis.com", "googleapis.com", True),
    ("a.b.googleapis.com", "googleapis.com", True), ("evil-googleapis.com", "googleapis.com", False),
    ("googleapis.com.evil.com", "googleapis.com", False), ("xgoogleapis.com", "googleapis.com", False),
    ("googleapis.co", "googleapis.com", False), ("com", "googleapis.com", False),
])
def test_is_within_a_domain_never_a_look_alike(host, domain, within):
    assert urls.is_within(host, domain) is within


# --- properties -------------------------------------------------------------------------------------------------------------

LOWER_ALNUM = string.ascii_lowercase + string.digits
LABEL = st.builds(lambda a, m, z: a + m + z, st.sampled_from(LOWER_ALNUM), st.text(alphabet=LOWER_ALNUM + "-", max_size=10),
                  st.sampled_from(LOWER_ALNUM)) | st.sampled_from(LOWER_ALNUM)
HOST = st.one_of(
    st.builds(lambda labels, top: ".".join([*labels, top]), st.lists(LABEL, max_size=3), st.text(alphabet=string.ascii_lowercase, min_size=2, max_size=6)),
    st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
)
PATH = st.text(alphabet=string.ascii_letters + string.digits + "._~!$&'()*+,;=:@/-", max_size=30).map("/".__add__)
QUERY = st.text(alphabet=string.ascii_letters + string.digits + "._~!$&'()*+,;=:@/?-", max_size=30)


@LIMITS
@given(st.sampled_from(["http", "https", "HTTPS"]), HOST, st.one_of(st.none(), st.integers(1, 65535)), st.one_of(st.just(""), PATH),
       st.one_of(st.none(), QUERY))
def test_every_plain_url_is_read_as_pythons_parser_reads_it(scheme, host, port, path, query):
    text = f"{scheme}://{host}" + (f":{port}" if port else "") + path + (f"?{query}" if query is not None else "")
    url = urls.parse(text)
    assert url == Url(scheme.lower(), host, port, path, query)
    split = urllib.parse.urlsplit(text)
    assert (split.scheme, split.port, split.path, split.query) == (url.scheme, url.port, url.path, query or "")
    assert (split.hostname or "") == url.host.strip("[]") or ipaddress.ip_address(split.hostname) == ipaddress.ip_address(url.host.strip("[]"))
    assert urls.parse(str(url)) == url


FRAGMENTS = st.lists(st.sampled_from(["http://", "https://", "HTTPS://", "a", "a.com", "127.0.0.1", "127.1", "0x7f", "[", "]", "::1",
                                      ":", "443", "@", "/", "\\", "?", "#", "%", "%41", ".", "-", " ", "\t", "ä", "localhost"]),
                     max_size=12).map("".join)


@LIMITS
@given(st.one_of(ADVERSARIAL, FRAGMENTS))
@example("https://" + "a." * 150_000 + "com")
@example("https://a.com/" + "%" * 60_000)
@example("https://[" + ":" * 60_000)
@example("https://" + "a" * 300_000)
def test_any_text_is_a_url_that_reads_back_to_itself_or_none(text):
    url = urls.parse(text)
    if url is None:
        return
    assert url.scheme in ("http", "https") and str(url).isascii() and str(url).isprintable()
    assert str(url).lower() == text.lower() or url.port is not None  # only case and a port's leading zeros change
    assert urls.parse(str(url)) == url
    assert not any(c in str(url) for c in "\\#@ \t\n") or "@" in url.path + (url.query or "")
    assert "@" not in url.netloc and url.host == url.host.lower()
    assert url.port is None or 1 <= url.port <= 65535
