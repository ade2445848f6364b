"""usage_api: which API a ledger row is for (chat/completions, completions, embeddings), now
that the relayed endpoints are accounted; the rows before it were all chat

Revision ID: 5d8e3b7a1c92
Revises: c7a2e91d4b35
Create Date: 2026-12-03 13:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5d8e3b7a1c92"
down_revision: str | None = "c7a2e91d4b35"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("usage_events") as batch:
        batch.add_column(
            sa.Column(
                "api", sa.String(length=32), nullable=False, server_default="chat/completions"
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("usage_events") as batch:
        batch.drop_column("api")
