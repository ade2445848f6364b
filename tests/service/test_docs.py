"""The README's configuration table keeps up with the settings class."""

from __future__ import annotations

from pathlib import Path

from chatservice.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def configuration_section() -> str:
    # Other sections have tables of CHATSERVICE_TEST_* variables, which are not settings.
    after = README.read_text().split("\n## Configuration\n", 1)[1]
    return after.split("\n## ", 1)[0]


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    table_rows = {
        line.split("|")[1].strip().strip("`")
        for line in configuration_section().splitlines()
        if line.startswith(("| `CHATSERVICE_", "| `OTEL_"))
    }
    # A setting read from a standard variable (its alias) is documented under that name.
    expected = {
        field.validation_alias
        if isinstance(field.validation_alias, str)
        else f"CHATSERVICE_{name.upper()}"
        for name, field in Settings.model_fields.items()
    }
    assert expected - table_rows == set(), "settings missing from the README"
    assert table_rows - expected == set(), "README documents settings that do not exist"
