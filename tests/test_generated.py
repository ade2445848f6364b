"""Every generated copy in the repository is what `make generate` writes from its source."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.generate import REPO_ROOT, outputs

COPIES = outputs()


@pytest.mark.parametrize("path", COPIES, ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_committed_copy_is_generated(path: Path) -> None:
    assert path.read_text() == COPIES[path], (
        f"{path.relative_to(REPO_ROOT)} is stale: run `make generate`"
    )
