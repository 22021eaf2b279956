"""History as a tree: each message has a parent, each conversation its current leaf (regenerate, edit, fork).

`position` stays the order of insertion within a conversation. Existing conversations become a single
branch: each message's parent is the one before it, and the leaf is the last one.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ADD COLUMN with REFERENCES is plain SQLite; a batch copy of `message` would be needed otherwise.
    op.execute("ALTER TABLE message ADD COLUMN parent_id INTEGER REFERENCES message(id) ON DELETE CASCADE")
    op.add_column("conversation", sa.Column("current_leaf_id", sa.Integer(), nullable=True))
    op.create_index("ix_message_parent_id", "message", ["parent_id"])
    op.execute(
        """UPDATE message SET parent_id = (
            SELECT p.id FROM message p WHERE p.conversation_id = message.conversation_id AND p.position < message.position
            ORDER BY p.position DESC LIMIT 1)"""
    )
    op.execute(
        """UPDATE conversation SET current_leaf_id = (
            SELECT m.id FROM message m WHERE m.conversation_id = conversation.id ORDER BY m.position DESC LIMIT 1)"""
    )


def downgrade() -> None:
    # Only the active branch survives a downgrade, in order; the other branches are deleted.
    op.execute(
        """WITH RECURSIVE path(id) AS (
            SELECT current_leaf_id FROM conversation WHERE current_leaf_id IS NOT NULL
            UNION ALL SELECT m.parent_id FROM message m JOIN path ON m.id = path.id WHERE m.parent_id IS NOT NULL)
        DELETE FROM message WHERE id NOT IN (SELECT id FROM path)"""
    )
    op.drop_index("ix_message_parent_id", table_name="message")
    op.execute("ALTER TABLE conversation DROP COLUMN current_leaf_id")
    op.execute("ALTER TABLE message DROP COLUMN parent_id")
