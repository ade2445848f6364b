"""The chart's README lists every value, as generated from values.yaml and its schema."""

from __future__ import annotations

from typing import Any

import yaml

from tools.chart_readme import CHART_DIR, documented_keys, render_readme


def leaves(tree: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys of every value a user can set (maps are walked, lists are values)."""
    found = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            found += leaves(value, f"{dotted}.")
        else:
            found.append(dotted)
    return found


def test_readme_is_generated_from_the_values() -> None:
    committed = (CHART_DIR / "README.md").read_text()
    assert committed == render_readme(), (
        "charts/chatservice/README.md is stale: run `make generate`"
    )


def test_every_value_is_documented() -> None:
    text = (CHART_DIR / "values.yaml").read_text()
    documented = documented_keys(text)
    undocumented = [
        leaf
        for leaf in leaves(yaml.safe_load(text))
        if not any(leaf == key or leaf.startswith(f"{key}.") for key in documented)
    ]
    assert undocumented == [], "add a `# --` comment above each of these in values.yaml"
    assert all(documented.values()), "a `# --` comment without text"


def test_the_generator_reads_nested_keys_and_continued_comments() -> None:
    text = "a:\n  # -- first line\n  # second line\n  b: 1\n  # plain comment\n  c: 2\n"
    assert documented_keys(text) == {"a.b": "first line second line"}
