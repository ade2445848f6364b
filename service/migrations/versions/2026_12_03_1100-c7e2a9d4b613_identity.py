"""identity: logins and roles for users, teams and memberships, key ownership and rotation,
and the invalidation log workers poll to drop cached keys

Revision ID: c7e2a9d4b613
Revises: 8b3d5e6f2a41
Create Date: 2026-12-03 11:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c7e2a9d4b613"
down_revision: str | None = "8b3d5e6f2a41"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teams")),
        sa.UniqueConstraint("name", name=op.f("uq_teams_name")),
    )
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("password_hash", sa.String(length=200), nullable=True))
        batch.add_column(
            sa.Column("role", sa.String(length=16), nullable=False, server_default="member")
        )
        batch.add_column(
            sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    users = sa.table(
        "users",
        sa.column("is_admin", sa.Boolean()),
        sa.column("role", sa.String()),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    op.execute(users.update().where(users.c.is_admin.is_(True)).values(role="admin"))
    op.execute(users.update().values(updated_at=users.c.created_at))
    with op.batch_alter_table("users") as batch:
        batch.alter_column("updated_at", nullable=False)
        batch.drop_column("is_admin")
        batch.create_check_constraint("role", "role IN ('admin', 'member')")

    op.create_table(
        "memberships",
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_memberships_team_id_teams"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_memberships_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("team_id", "user_id", name=op.f("pk_memberships")),
    )  # fmt: skip
    op.create_index(op.f("ix_memberships_user_id"), "memberships", ["user_id"], unique=False)

    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("team_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("allowed_models", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("metadata", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("previous_key_hash", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("previous_key_expires_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch.create_foreign_key(
            op.f("fk_api_keys_team_id_teams"), "teams", ["team_id"], ["id"], ondelete="SET NULL"
        )
        batch.create_unique_constraint(op.f("uq_api_keys_previous_key_hash"), ["previous_key_hash"])
        batch.create_index(op.f("ix_api_keys_team_id"), ["team_id"], unique=False)
    keys = sa.table(
        "api_keys",
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    op.execute(keys.update().values(updated_at=keys.c.created_at))
    with op.batch_alter_table("api_keys") as batch:
        batch.alter_column("updated_at", nullable=False)

    op.create_table(
        "auth_invalidations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_invalidations")),
    )


def downgrade() -> None:
    op.drop_table("auth_invalidations")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_index(op.f("ix_api_keys_team_id"))
        batch.drop_constraint(op.f("uq_api_keys_previous_key_hash"), type_="unique")
        batch.drop_constraint(op.f("fk_api_keys_team_id_teams"), type_="foreignkey")
        for column in (
            "previous_key_expires_at", "previous_key_hash", "updated_at", "metadata",
            "allowed_models", "team_id",
        ):  # fmt: skip
            batch.drop_column(column)
    op.drop_index(op.f("ix_memberships_user_id"), table_name="memberships")
    op.drop_table("memberships")
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("is_admin", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    users = sa.table("users", sa.column("is_admin", sa.Boolean()), sa.column("role", sa.String()))
    op.execute(users.update().where(users.c.role == "admin").values(is_admin=True))
    with op.batch_alter_table("users") as batch:
        batch.alter_column("is_admin", server_default=None)
        batch.drop_constraint(op.f("ck_users_role"), type_="check")
        for column in ("updated_at", "active", "role", "password_hash"):
            batch.drop_column(column)
    op.drop_table("teams")
