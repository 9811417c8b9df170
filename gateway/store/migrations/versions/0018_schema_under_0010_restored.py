"""the tables and columns of 0007 and 0009 on a database that an earlier release stamped 0010

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-08 18:00:00.000000

Migration 0010 came first right after 0006; 0007 and then 0009 were put under it later. A
database that a release of then migrated is stamped 0010 (or later) without their tables and
columns, and upgrades never ran them. This runs the upgrade of each of them whose objects are
all missing; a database that has only some of a migration's objects is not one any release
left, and stops the upgrade.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from gateway.store.db import MigrationRefused

# revision identifiers, used by Alembic.
revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The migrations put under 0010, and what each adds: (table, column), None for a new table.
_UNDER_0010: dict[str, tuple[tuple[str, str | None], ...]] = {
    "0007": (("badges", "note"), ("badges", "credly_checked_at")),
    "0009": (
        ("receipts", None),
        ("advance_notices", None),
        ("deliveries", "event_type"),
        ("deliveries", "data"),
        ("subscriptions", "notice_days"),
    ),
}


def upgrade() -> None:
    """Run 0007's and 0009's upgrades where a release that skipped them left the database."""
    for migration, objects in _UNDER_0010.items():
        inspector = sa.inspect(op.get_bind())
        missing = [(t, c) for t, c in objects if not _exists(inspector, t, c)]
        if not missing:
            continue
        if len(missing) < len(objects):
            names = ", ".join(t if c is None else f"{t}.{c}" for t, c in missing)
            raise MigrationRefused(f"the database lacks {names} of migration {migration} alone")
        context.script.get_revision(migration).module.upgrade()


def _exists(inspector: sa.Inspector, table: str, column: str | None) -> bool:
    if not inspector.has_table(table):
        return False
    return column is None or column in {c["name"] for c in inspector.get_columns(table)}


def downgrade() -> None:
    """Nothing to undo: the objects are 0007's and 0009's, which their downgrades drop."""
