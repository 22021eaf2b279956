"""Full-text search over message text and audio transcripts; knows nothing of models or UI.

SQLite: the FTS5 trigram index of revision 0002. Trigrams need three characters: shorter queries (two Chinese
characters are a word) scan the message text instead, which is fast enough for a personal history. Audio
transcripts are searched the same way through their own index (`transcript_fts`, revision 0006); a hit there is
the message that carries the audio.

PostgreSQL (revision 0008): a substring match served by pg_trgm's GIN index (so Chinese, Japanese and Korean
substrings are found, as in SQLite), or the words of the query in any order by PostgreSQL's full-text search.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from domain.limits import SNIPPET_CHARS
from domain.types import SearchHit

# Shown before a snippet that comes from what was said in an audio file rather than typed.
TRANSCRIPT_MARK = "🗣 "
_MESSAGE_HIT = """
    SELECT m.id, m.conversation_id, m.content, c.title, m.created_at FROM {source}
    JOIN conversation c ON c.id = m.conversation_id
    WHERE {column} LIKE :pattern ESCAPE '\\' AND c.user_id IS :owner ORDER BY m.created_at DESC LIMIT :limit
"""
_MESSAGES_INDEXED = _MESSAGE_HIT.format(source="message_fts f JOIN message m ON m.id = f.rowid", column="f.content")
_MESSAGES_SCAN = _MESSAGE_HIT.format(source="message m", column="m.content")
_TRANSCRIPT_HIT = """
    SELECT m.id, m.conversation_id, t.text, c.title, m.created_at FROM {source}
    JOIN message_attachment ma ON ma.attachment_sha256 = t.sha256 JOIN message m ON m.id = ma.message_id
    JOIN conversation c ON c.id = m.conversation_id
    WHERE {column} LIKE :pattern ESCAPE '\\' AND c.user_id IS :owner ORDER BY m.created_at DESC LIMIT :limit
"""
_TRANSCRIPTS_INDEXED = _TRANSCRIPT_HIT.format(source="transcript_fts f JOIN transcript t ON t.id = f.rowid", column="f.text")
_TRANSCRIPTS_SCAN = _TRANSCRIPT_HIT.format(source="transcript t", column="t.text")
_POSTGRES_MATCH = (
    "({column} ILIKE :pattern ESCAPE '\\' OR to_tsvector('simple', {column}) @@ plainto_tsquery('simple', :query))"
    " AND c.user_id IS NOT DISTINCT FROM :owner"
)
_MESSAGES_POSTGRES = _MESSAGE_HIT.replace("{column} LIKE :pattern ESCAPE '\\' AND c.user_id IS :owner", _POSTGRES_MATCH).format(
    source="message m", column="m.content"
)
_TRANSCRIPTS_POSTGRES = _TRANSCRIPT_HIT.replace(
    "{column} LIKE :pattern ESCAPE '\\' AND c.user_id IS :owner", _POSTGRES_MATCH
).format(source="transcript t", column="t.text")


def search_messages(sessions: sessionmaker[Session], query: str, owner: int | None, limit: int = 50) -> list[SearchHit]:
    """`owner`'s messages whose text or audio transcript contains `query` (case-insensitive for ASCII), newest
    first, with a snippet around the match."""
    query = " ".join(query.split())
    if not query:
        return []
    pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    params = {"pattern": pattern, "owner": owner, "limit": limit, "query": query}
    with sessions() as session:
        dialect = session.get_bind().dialect.name
        if dialect == "postgresql":
            messages, transcripts = _MESSAGES_POSTGRES, _TRANSCRIPTS_POSTGRES
        elif len(query) >= 3 and dialect == "sqlite":
            messages, transcripts = _MESSAGES_INDEXED, _TRANSCRIPTS_INDEXED
        else:
            messages, transcripts = _MESSAGES_SCAN, _TRANSCRIPTS_SCAN
        typed = session.execute(text(messages), params).all()
        heard = session.execute(text(transcripts), params).all()
    hits: dict[int, tuple] = {}
    for mid, cid, content, title, created in [*typed, *((m, c, TRANSCRIPT_MARK + t, ti, cr) for m, c, t, ti, cr in heard)]:
        hits.setdefault(mid, (cid, content, title, created))  # a message found by its text and its audio shows once
    ordered = sorted(hits.items(), key=lambda item: item[1][3], reverse=True)[:limit]
    return [
        SearchHit(conversation_id=cid, conversation_title=title, message_id=mid, snippet=_snippet(content, query))
        for mid, (cid, content, title, _) in ordered
    ]


def _snippet(content: str, query: str) -> str:
    if content.startswith(TRANSCRIPT_MARK):
        return TRANSCRIPT_MARK + snippet(content[len(TRANSCRIPT_MARK) :], query)
    return snippet(content, query)


def snippet(content: str, query: str, width: int = SNIPPET_CHARS) -> str:
    """The text around the first match, on one line, with … where it was cut."""
    flat = " ".join(content.split())
    at = flat.lower().find(query.lower())
    if at < 0:
        return flat[:width] + ("…" if len(flat) > width else "")
    start = max(0, at - (width - len(query)) // 2)
    end = min(len(flat), start + max(width, len(query)))
    return ("…" if start else "") + flat[start:end] + ("…" if end < len(flat) else "")
