"""The README stays true to the code: every setting documented, the two commands present."""

from __future__ import annotations

from pathlib import Path

from backend.config import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_in_the_readme_table() -> None:
    missing = [name.upper() for name in Settings.model_fields if f"| `{name.upper()}` |" not in README]
    assert missing == []


def test_the_two_commands_are_documented() -> None:
    assert "make run" in README and "make test" in README
