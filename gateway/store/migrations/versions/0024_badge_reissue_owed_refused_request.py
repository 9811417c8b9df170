"""badges keep what the badge jobs act on in columns, not in the note the standing shows

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-13 10:00:00.000000

`reissue_owed`: the badge was revoked unclaimed to be issued again to the member's new e-mail
address. `refused_request`: the address, names and badge template of an issue Credly refused for
good, in the form `jobs.badges.notes.refused_request` gives. Releases before this one read both
back from the note; they are filled here from the notes those releases wrote (their sentences are
copied below, as they were then). The notes stay as they are, so the downgrade loses nothing.
"""

import json
import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0024"
down_revision: str | Sequence[str] | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The note of a badge revoked to be issued again to a new e-mail address.
REISSUE_NOTE = "revoked unclaimed, to be issued again to the member's new e-mail address"
#: How the note of an issue Credly refused for good began.
REFUSED_OPENING = "Credly refused to issue this badge to "
#: The whole of that note; the names are the first and last name with a space between them.
REFUSED_NOTE = re.compile(
    re.escape(REFUSED_OPENING)
    + r"(?P<email>.+?) as (?P<names>.*) \(badge template (?P<template>.*)\); it is not issued "
    r"again until one of these changes, or the failed job is requeued \(`gateway jobs requeue`\)"
)

_badges = sa.table(
    "badges",
    sa.column("id", sa.Integer),
    sa.column("certification_id", sa.String),
    sa.column("note", sa.Text),
    sa.column("reissue_owed", sa.Boolean),
    sa.column("refused_request", sa.Text),
)
_certifications = sa.table(
    "certifications", sa.column("certification_id", sa.String), sa.column("standing", sa.JSON)
)


def _names(names: str, member: dict[str, Any]) -> tuple[str, str]:
    """The first and last name a refused note's `names` joined: the member's own when they make
    it up (either may hold a space), else split at its first space (a request other than the one
    the member's details call for now, whichever the split)."""
    first, last = member.get("first_name"), member.get("last_name")
    if isinstance(first, str) and isinstance(last, str) and f"{first} {last}" == names:
        return first, last
    first, _, last = names.partition(" ")
    return first, last


def _refused_request(email: str, first_name: str, last_name: str, template: str) -> str:
    """`jobs.badges.notes.refused_request` as of this release."""
    return json.dumps(
        {
            "email": email,
            "first_name": first_name,
            "last_name": last_name,
            "badge_template_id": template,
        }
    )


def upgrade() -> None:
    """Add the columns and fill them from the notes."""
    with op.batch_alter_table("badges") as batch:
        batch.add_column(
            sa.Column("reissue_owed", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.add_column(sa.Column("refused_request", sa.Text(), nullable=True))
    bind = op.get_bind()
    bind.execute(_badges.update().where(_badges.c.note == REISSUE_NOTE).values(reissue_owed=True))
    refused = bind.execute(
        sa.select(_badges.c.id, _badges.c.note, _certifications.c.standing)
        .join(
            _certifications,
            _certifications.c.certification_id == _badges.c.certification_id,
        )
        .where(_badges.c.note.startswith(REFUSED_OPENING, autoescape=True))
    ).all()
    for badge_id, note, standing in refused:
        said = REFUSED_NOTE.fullmatch(note)
        if said is None:
            continue
        first, last = _names(said["names"], (standing or {}).get("member") or {})
        request = _refused_request(said["email"], first, last, said["template"])
        bind.execute(
            _badges.update().where(_badges.c.id == badge_id).values(refused_request=request)
        )


def downgrade() -> None:
    """Drop the columns: the notes the release before reads them from are kept."""
    with op.batch_alter_table("badges") as batch:
        batch.drop_column("refused_request")
        batch.drop_column("reissue_owed")
