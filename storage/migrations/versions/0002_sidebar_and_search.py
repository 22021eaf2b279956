"""Pinned and archived conversations; full-text search over message text (FTS5, trigram tokenizer).

The trigram tokenizer indexes every three-character run, so substrings of text without spaces (Chinese,
Japanese, Korean) are found as well as English words. Triggers keep the index in step with every
insert, edit and delete of a message, cascades from deleted conversations included.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

FTS_TRIGGERS = [
    """CREATE TRIGGER message_fts_insert AFTER INSERT ON message BEGIN
        INSERT INTO message_fts(rowid, content) VALUES (new.id, new.content);
    END""",
    """CREATE TRIGGER message_fts_delete AFTER DELETE ON message BEGIN
        INSERT INTO message_fts(message_fts, rowid, content) VALUES ('delete', old.id, old.content);
    END""",
    """CREATE TRIGGER message_fts_update AFTER UPDATE OF content ON message BEGIN
        INSERT INTO message_fts(message_fts, rowid, content) VALUES ('delete', old.id, old.content);
        INSERT INTO message_fts(rowid, content) VALUES (new.id, new.content);
    END""",
]


def upgrade() -> None:
    # Plain ADD COLUMN, not a batch copy of the table: SQLite's copy-and-drop would cascade-delete messages.
    op.add_column("conversation", sa.Column("pinned", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("conversation", sa.Column("archived", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index("ix_conversation_list", "conversation", ["archived", "pinned", "updated_at"])
    if op.get_bind().dialect.name != "sqlite":
        return  # FTS5 is SQLite's; storage.search scans message text elsewhere
    op.execute(
        "CREATE VIRTUAL TABLE message_fts USING fts5("
        "content, content='message', content_rowid='id', tokenize='trigram')"
    )
    for trigger in FTS_TRIGGERS:
        op.execute(trigger)
    op.execute("INSERT INTO message_fts(message_fts) VALUES ('rebuild')")  # index what is already there


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("message_fts_insert", "message_fts_delete", "message_fts_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS message_fts")
    op.drop_index("ix_conversation_list", table_name="conversation")
    # SQLite has had DROP COLUMN since 3.35; Alembic's SQLite dialect would insist on a batch copy.
    op.execute("ALTER TABLE conversation DROP COLUMN archived")
    op.execute("ALTER TABLE conversation DROP COLUMN pinned")
