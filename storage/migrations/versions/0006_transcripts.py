"""Whisper transcripts of audio attachments: one per file (by its sha256), searchable with FTS5 (trigram).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

FTS_TRIGGERS = [
    """CREATE TRIGGER transcript_fts_insert AFTER INSERT ON transcript BEGIN
        INSERT INTO transcript_fts(rowid, text) VALUES (new.id, new.text);
    END""",
    """CREATE TRIGGER transcript_fts_delete AFTER DELETE ON transcript BEGIN
        INSERT INTO transcript_fts(transcript_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END""",
    """CREATE TRIGGER transcript_fts_update AFTER UPDATE OF text ON transcript BEGIN
        INSERT INTO transcript_fts(transcript_fts, rowid, text) VALUES ('delete', old.id, old.text);
        INSERT INTO transcript_fts(rowid, text) VALUES (new.id, new.text);
    END""",
]


def upgrade() -> None:
    op.create_table(
        "transcript",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("sha256", sa.String(64), sa.ForeignKey("attachment.sha256", ondelete="CASCADE"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("language", sa.String(16)),
        sa.Column("seconds", sa.Float()),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("sha256", name="uq_transcript_sha256"),
    )
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("CREATE VIRTUAL TABLE transcript_fts USING fts5(text, content='transcript', content_rowid='id', tokenize='trigram')")
    for trigger in FTS_TRIGGERS:
        op.execute(trigger)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("transcript_fts_insert", "transcript_fts_delete", "transcript_fts_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS transcript_fts")
    op.drop_table("transcript")
