"""Service URLs shown to clients and logs carry no credentials, tokens or query strings."""

import pytest

from backend.redaction import display_host, display_url


def test_credentials_and_query_are_dropped() -> None:
    assert display_url("http://user:secret@gpu-box:8001/v1?key=x") == "http://gpu-box:8001/v1"
    assert display_url("http://[::1]:11434") == "http://[::1]:11434"
    assert display_url("https://api.example.com/v1") == "https://api.example.com/v1"


def test_a_host_alone_leaves_out_the_path_where_a_token_may_sit() -> None:
    assert display_host("http://user:secret@searx.local:8888/search/tok3n?key=x") == "searx.local:8888"
    assert display_host("https://en.wikipedia.org/w/api.php") == "en.wikipedia.org"
    assert display_host("http://[::1]:8080/v1") == "[::1]:8080"


@pytest.mark.parametrize("url", ["http://user:secret@host:notaport/v1", "secret-without-a-scheme", ""])
def test_an_address_that_does_not_parse_is_never_echoed(url: str) -> None:
    assert display_host(url) == "its configured address"
    assert "secret" not in display_url(url)
