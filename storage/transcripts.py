"""TranscriptRepository: the one transcript of each audio file, by its sha256; knows nothing of Whisper or UI.

Transcripts belong to files, not to owners: the same bytes say the same thing whoever sent them, and only
someone whose message links the file ever sees its transcript (through that message).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from domain.types import Transcript
from storage.database import Database
from storage.records import stored_text, to_transcript
from storage.schema import AttachmentRow, TranscriptRow


class TranscriptRepository:
    def __init__(self, database: Database):
        self._read = database.read
        self._write = database.write

    def get(self, sha256: str) -> Transcript | None:
        with self._read() as session:
            return to_transcript(session.scalar(select(TranscriptRow).where(TranscriptRow.sha256 == sha256)))

    def save(self, sha256: str, transcript: Transcript) -> bool:
        """Store (or replace) the file's transcript; False if the file is gone (its last message was deleted meanwhile)."""
        with self._write.begin() as session:
            if session.get(AttachmentRow, sha256) is None:
                return False
            row = session.scalar(select(TranscriptRow).where(TranscriptRow.sha256 == sha256))
            if row is None:
                row = TranscriptRow(sha256=sha256)
                session.add(row)
            row.status = transcript.status.value
            row.text = transcript.text
            row.language = transcript.language
            row.seconds = transcript.seconds
            row.model = transcript.model
            row.error = stored_text(transcript.error)
            row.created_at = datetime.now(UTC).replace(tzinfo=None)
            return True
