"""A provider's API token goes to its own origin only: the origin check, and the URLs relay builds."""

from __future__ import annotations

from typing import Any

import pytest

from relay.errors import ConfigError
from relay.providers.api import ApiOrigin, ProviderApi, api_origin
from tests.unit.providers.support import provider

REPLICATE = ProviderApi("https://api.replicate.com/v1", "r8_token", "Bearer")


@pytest.mark.parametrize(
    "url",
    [
        "https://api.replicate.com/v1/trainings/t1",
        "https://api.replicate.com/other/path?x=1",
        "https://API.Replicate.COM/v1/predictions/p1",  # hosts compare without case
        "https://api.replicate.com:443/v1/predictions/p1",  # the default port, spelled out
        "HTTPS://api.replicate.com/v1",
    ],
)
def test_urls_on_the_api_origin_pass(url: str) -> None:
    """Same scheme, host (any case) and port (default or spelled out): on the API."""
    assert REPLICATE.on_api(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://api.replicate.com/v1/predictions/p1",  # scheme
        "https://api.replicate.com:8443/v1/predictions/p1",  # port
        "https://api.replicate.com:80/v1/predictions/p1",  # http's default port, not https's
        "https://api.replicate.com@evil/v1",  # user info: the host is `evil`
        "https://api.replicate.com%40evil/v1",
        "https://api.replicate.com\\@evil/v1",
        "https://token:secret@api.replicate.com/v1",  # user info, even before the right host
        "https://api.replicate.com.evil.com/v1",  # look-alikes
        "https://evilapi.replicate.com/v1",
        "https://replicate.com/v1",
        "https://api.replicate.com./v1",  # the trailing-dot spelling is another origin: exact match only
        "https://127.0.0.1/v1",
        "/v1/predictions/p1",  # relative: no origin
        "//api.replicate.com/v1",
        "ftp://api.replicate.com/v1",
        "file:///etc/passwd",
        "",
        "https://api.replicate.com:99999/v1",
    ],
)
def test_urls_off_the_api_origin_are_refused(url: str) -> None:
    """A different scheme or port, any user info, a look-alike host or no absolute http(s) URL: refused."""
    assert not REPLICATE.on_api(url)


@pytest.mark.parametrize("value", [None, 42, ["https://api.replicate.com/v1"], {"url": "x"}])
def test_values_that_are_not_urls_are_refused(value: Any) -> None:
    """Metadata is any JSON: a value that is not a string is never a URL on the API."""
    assert not REPLICATE.on_api(value)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://h", "https://h:443/x"),
        ("http://h:80", "http://h/"),
        ("https://H.example", "https://h.example"),
        ("http://[::1]:8080/v1", "http://[::1]:8080/other"),
    ],
)
def test_default_ports_and_host_case_make_one_origin(a: str, b: str) -> None:
    """https://h and https://h:443 (and host case) are one origin."""
    assert api_origin(a) == api_origin(b) is not None


def test_origin_is_scheme_host_and_port() -> None:
    """The origin of an API base URL names its scheme, lower-case host and port."""
    assert api_origin("https://Queue.Fal.Run") == ApiOrigin("https", "queue.fal.run", 443)
    assert str(api_origin("http://127.0.0.1:8123/v1")) == "http://127.0.0.1:8123"


@pytest.mark.parametrize("job_id", ["a/../../other", "x?token=1", "x#y", "@evil.com", "x y%2F"])
def test_built_urls_keep_an_id_as_one_segment_on_the_api(job_id: str) -> None:
    """An ID relay puts in a URL is percent-encoded whole: it cannot add a path, query, fragment or host."""
    url = REPLICATE.url("predictions", job_id)
    assert REPLICATE.on_api(url)
    assert url.startswith("https://api.replicate.com/v1/predictions/") and url.count("/") == 5
    assert "?" not in url and "#" not in url and "@" not in url


def test_api_base_url_with_user_info_stops_the_config() -> None:
    """An `api_base_url` that is not an http(s) URL without user info is a config error naming the key."""
    with pytest.raises(ConfigError, match=r"sources\.src\.api_base_url"):
        provider(
            "replicate",
            secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            api_token="t",
            api_base_url="https://u@h",
        )


def test_source_api_base_url_replaces_the_default_origin() -> None:
    """With `api_base_url` the token's origin is that URL's, and the kind's default API is no longer on it."""
    fal = provider("fal", api_token="k", api_base_url="http://127.0.0.1:9000")
    assert fal.api is not None and fal.api.on_api("http://127.0.0.1:9000/fal-ai/flux/requests/r1")
    assert not fal.api.on_api("https://queue.fal.run/fal-ai/flux/requests/r1")
    assert provider("fal", api_token="k").api.on_api("https://queue.fal.run/x")  # type: ignore[union-attr]
    assert provider("fal").api is None  # no token: nothing is ever sent
