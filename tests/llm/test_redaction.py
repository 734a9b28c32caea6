"""Backend URLs shown to clients and logs carry no credentials."""

from backend.llm.redaction import display_url


def test_credentials_and_query_are_dropped() -> None:
    assert display_url("http://user:secret@gpu-box:8001/v1?key=x") == "http://gpu-box:8001/v1"
    assert display_url("http://[::1]:11434") == "http://[::1]:11434"
    assert display_url("https://api.example.com/v1") == "https://api.example.com/v1"
