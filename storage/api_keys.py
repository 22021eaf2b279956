"""Keys for the OpenAI-compatible API: created for a user, shown once, kept only as a SHA-256; knows nothing of HTTP.

A key is 32 random bytes, so a plain SHA-256 is as good as a slow password hash and lets each request be
checked with one indexed lookup.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update

from domain import limits
from domain.errors import InvalidInput
from domain.i18n import t
from storage.database import Database, utc_now
from storage.schema import ApiKeyRow

PREFIX = "sk-la-"


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    prefix: str  # the key's first characters, to tell keys apart
    created_at: datetime
    last_used_at: datetime | None


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


class ApiKeyRepository:
    def __init__(self, database: Database):
        self._read = database.read
        self._write = database.write

    def create(self, user_id: int, name: str) -> tuple[ApiKey, str]:
        """A new key for the user: (its record, the key itself, which is not stored and cannot be shown again)."""
        name = " ".join((name or "").split())[: limits.MAX_KEY_NAME_CHARS] or "key"
        key = PREFIX + secrets.token_urlsafe(32)
        row = ApiKeyRow(user_id=user_id, name=name, prefix=key[: len(PREFIX) + 4], key_hash=_digest(key), created_at=utc_now())
        with self._write.begin() as session:
            session.add(row)
            session.flush()
            return _record(row), key

    def list(self, user_id: int) -> list[ApiKey]:
        with self._read() as session:
            rows = session.scalars(select(ApiKeyRow).where(ApiKeyRow.user_id == user_id).order_by(ApiKeyRow.id))
            return [_record(row) for row in rows]

    def revoke(self, user_id: int, key_id: int) -> None:
        with self._write.begin() as session:
            gone = session.execute(delete(ApiKeyRow).where(ApiKeyRow.id == key_id, ApiKeyRow.user_id == user_id))
            if gone.rowcount == 0:
                raise InvalidInput(t("api_key.unknown", id=key_id))

    def user_of(self, key: str | None) -> int | None:
        """The user a key belongs to (and note its use), or None for a missing, revoked or unknown key."""
        if not key or not key.startswith(PREFIX):
            return None
        digest = _digest(key)
        with self._read() as session:
            user_id = session.scalar(select(ApiKeyRow.user_id).where(ApiKeyRow.key_hash == digest))
        if user_id is not None:
            with self._write.begin() as session:
                session.execute(update(ApiKeyRow).where(ApiKeyRow.key_hash == digest).values(last_used_at=utc_now()))
        return user_id


def _record(row: ApiKeyRow) -> ApiKey:
    return ApiKey(row.id, row.name, row.prefix, row.created_at, row.last_used_at)
