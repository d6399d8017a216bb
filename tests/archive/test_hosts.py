"""Which URLs are files: host_allowed (archive_hosts patterns) and file_urls (pointers into a result)."""

from __future__ import annotations

import pytest

from relay.archive import file_urls, host_allowed

REPLICATE = ["replicate.delivery", "*.replicate.delivery"]


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://replicate.delivery/pbxt/a/out.png", True),
        ("https://pbxt.replicate.delivery/a/out.png", True),
        ("https://a.b.replicate.delivery/out.png", True),
        ("http://replicate.delivery:8443/out.png", True),  # ports are ignored
        ("HTTPS://Replicate.Delivery./out.png", True),  # case and a trailing dot
        ("https://evilreplicate.delivery/out.png", False),
        ("https://replicate.delivery.evil.com/out.png", False),
        ("https://replicate.delivery@evil.com/out.png", False),  # user info is not the host
        ("ftp://replicate.delivery/out.png", False),
        ("file://replicate.delivery/etc/passwd", False),
        ("https://replicate.delivery:port/out.png", False),  # not a URL
        ("replicate.delivery/out.png", False),
        ("", False),
    ],
)
def test_host_allowed(url: str, allowed: bool) -> None:
    """Exact names and `*.` subdomains, http(s) only, case-insensitive, ports ignored."""
    assert host_allowed(url, REPLICATE) is allowed


def test_a_wildcard_does_not_cover_its_apex() -> None:
    """`*.fal.media` is any subdomain of fal.media, not fal.media itself."""
    assert host_allowed("https://v3.fal.media/x", ["*.fal.media"])
    assert not host_allowed("https://fal.media/x", ["*.fal.media"])
    assert not host_allowed("https://fal.media/x", [])


def test_ip_literal_hosts_match_exactly() -> None:
    """An address is a host name like any other: only the same address matches."""
    assert host_allowed("http://127.0.0.1:9000/x", ["127.0.0.1"])
    assert host_allowed("http://[::1]:9000/x", ["::1"])
    assert not host_allowed("http://127.0.0.2/x", ["127.0.0.1"])


def test_file_urls_finds_each_url_on_an_archive_host_with_its_pointer() -> None:
    """Nested lists and objects, in document order; other hosts and non-URL strings are left alone."""
    result = {
        "output": ["https://replicate.delivery/a/0.png", "https://pbxt.replicate.delivery/a/1.png"],
        "meta": {"preview": {"url": "https://replicate.delivery/a/p.webp"}, "log": "see https://x.y/z"},
        "elsewhere": "https://example.com/2.png",
        "note": "https://replicate.delivery/with space.png",
        "count": 3,
        "flag": True,
        "none": None,
        "nested": [[{"deep": ["https://replicate.delivery/d.png"]}]],
    }
    assert file_urls(result, REPLICATE) == [
        ("/output/0", "https://replicate.delivery/a/0.png"),
        ("/output/1", "https://pbxt.replicate.delivery/a/1.png"),
        ("/meta/preview/url", "https://replicate.delivery/a/p.webp"),
        ("/nested/0/0/deep/0", "https://replicate.delivery/d.png"),
    ]


def test_pointers_escape_tilde_and_slash() -> None:
    """RFC 6901: `~` becomes `~0` and `/` becomes `~1` (in that order, so `~1` in a key stays itself)."""
    url = "https://replicate.delivery/x.png"
    result = {"a/b": url, "m~n": url, "~1": url, "": {"": url}}
    assert file_urls(result, REPLICATE) == [
        ("/a~1b", url),
        ("/m~0n", url),
        ("/~01", url),
        ("//", url),  # the empty key, then the empty key inside it
    ]


def test_a_result_that_is_itself_a_url_has_the_empty_pointer() -> None:
    """The whole result is `""`; a result with no strings on archive hosts has no files."""
    url = "https://replicate.delivery/x.png"
    assert file_urls(url, REPLICATE) == [("", url)]
    assert file_urls(None, REPLICATE) == []
    assert file_urls([1, "two", 3.0], REPLICATE) == []


def test_a_deeply_nested_result_is_walked_without_recursion() -> None:
    """Deeper than Python's recursion limit still works."""
    url = "https://replicate.delivery/x.png"
    result: object = url
    for _ in range(5000):
        result = [result]
    assert file_urls(result, REPLICATE) == [("/0" * 5000, url)]
