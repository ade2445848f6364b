"""Where the database's schema stands relative to the code's migration history."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from alembic.script import ScriptDirectory


class SchemaStatus(StrEnum):
    CURRENT = "current"
    # The database revision is an ancestor of the code's head: migrations not applied yet.
    BEHIND = "behind"
    # A revision the code does not know: a newer release migrated (expand/contract keeps
    # this version working meanwhile).
    AHEAD = "ahead"


@dataclass(frozen=True, slots=True)
class SchemaHistory:
    """The code's revisions, read once at start-up from the migration scripts."""

    heads: frozenset[str]
    known: frozenset[str]

    @classmethod
    def load(cls, script: ScriptDirectory) -> SchemaHistory:
        return cls(
            heads=frozenset(script.get_heads()),
            known=frozenset(rev.revision for rev in script.walk_revisions()),
        )

    def status(self, current: frozenset[str]) -> SchemaStatus:
        if current and current <= self.heads:
            return SchemaStatus.CURRENT
        if current and not current <= self.known:
            return SchemaStatus.AHEAD
        return SchemaStatus.BEHIND
