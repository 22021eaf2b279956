"""Full-text search over message text, through the FTS5 trigram index of revision 0002; knows nothing of models or UI.

Trigrams need three characters: shorter queries (two Chinese characters are a word) scan the message
text instead, which is fast enough for a personal history. Audio transcripts, when they exist, join the search
with an FTS5 table of their own, kept in step by triggers the same way and queried alongside this one.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from domain.types import SearchHit

SNIPPET_CHARS = 80
_INDEXED_QUERY = """
    SELECT m.id, m.conversation_id, m.content, c.title FROM message_fts f
    JOIN message m ON m.id = f.rowid JOIN conversation c ON c.id = m.conversation_id
    WHERE f.content LIKE :pattern ESCAPE '\\' AND c.user_id IS :owner ORDER BY m.created_at DESC LIMIT :limit
"""
_SCAN_QUERY = """
    SELECT m.id, m.conversation_id, m.content, c.title FROM message m
    JOIN conversation c ON c.id = m.conversation_id
    WHERE m.content LIKE :pattern ESCAPE '\\' AND c.user_id IS :owner ORDER BY m.created_at DESC LIMIT :limit
"""


def search_messages(sessions: sessionmaker[Session], query: str, owner: int | None, limit: int = 50) -> list[SearchHit]:
    """`owner`'s messages containing `query` (case-insensitive for ASCII), newest first, with a snippet around it."""
    query = " ".join(query.split())
    if not query:
        return []
    pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    with sessions() as session:
        indexed = len(query) >= 3 and session.get_bind().dialect.name == "sqlite"
        rows = session.execute(text(_INDEXED_QUERY if indexed else _SCAN_QUERY), {"pattern": pattern, "owner": owner, "limit": limit})
        return [
            SearchHit(conversation_id=cid, conversation_title=title, message_id=mid, snippet=snippet(content, query))
            for mid, cid, content, title in rows
        ]


def snippet(content: str, query: str, width: int = SNIPPET_CHARS) -> str:
    """The text around the first match, on one line, with … where it was cut."""
    flat = " ".join(content.split())
    at = flat.lower().find(query.lower())
    if at < 0:
        return flat[:width] + ("…" if len(flat) > width else "")
    start = max(0, at - (width - len(query)) // 2)
    end = min(len(flat), start + max(width, len(query)))
    return ("…" if start else "") + flat[start:end] + ("…" if end < len(flat) else "")
