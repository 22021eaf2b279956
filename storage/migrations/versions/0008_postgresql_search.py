"""Search indexes for PostgreSQL: pg_trgm for substrings (Chinese, Japanese and Korean have no spaces to split words
at), and PostgreSQL's full-text search for words in any order, over message text and transcripts. SQLite has its
FTS5 trigram tables from 0002 and 0006 instead, so this revision does nothing there.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

INDEXES = [
    ("ix_message_content_trgm", "message USING gin (content gin_trgm_ops)"),
    ("ix_message_content_words", "message USING gin (to_tsvector('simple', content))"),
    ("ix_transcript_text_trgm", "transcript USING gin (text gin_trgm_ops)"),
    ("ix_transcript_text_words", "transcript USING gin (to_tsvector('simple', text))"),
]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")  # a trusted extension: the database's owner may create it
    for name, target in INDEXES:
        op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {target}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, _ in INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
