"""Accounts: users with argon2 password hashes; knows nothing of models or UI.

While no user exists the app is one local person's and every conversation has no owner. The first
user added takes those conversations over; later users start empty.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

from sqlalchemy import delete, func, select, update

from domain import limits
from domain.errors import InvalidInput
from domain.i18n import t
from storage.blobs import BlobStore
from storage.database import Database
from storage.schema import AttachmentRow, ConversationRow, MessageAttachmentRow, UserRow

NAME = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9._@-]{{0,{limits.MAX_USER_NAME_CHARS - 1}}}$")


def _hasher():
    from argon2 import PasswordHasher

    return PasswordHasher()


class UserRepository:
    def __init__(self, database: Database, blobs: BlobStore):
        self._read = database.read
        self._write = database.write
        self._blobs = blobs

    def any(self) -> bool:
        with self._read() as session:
            return session.scalar(select(func.count()).select_from(UserRow)) > 0

    def names(self) -> list[str]:
        with self._read() as session:
            return list(session.scalars(select(UserRow.name).order_by(UserRow.name)))

    def id_of(self, name: str | None) -> int | None:
        if not name:
            return None
        with self._read() as session:
            return session.scalar(select(UserRow.id).where(UserRow.name == name))

    def add(self, name: str, password: str) -> int:
        """A new user; the first one also takes over the conversations made before accounts existed."""
        if not NAME.match(name or ""):
            raise InvalidInput(t("user.bad_name"))
        password_hash = _hash(password)
        with self._write.begin() as session:
            if session.scalar(select(UserRow.id).where(UserRow.name == name)) is not None:
                raise InvalidInput(t("user.exists", name=name))
            first = session.scalar(select(func.count()).select_from(UserRow)) == 0
            row = UserRow(name=name, password_hash=password_hash, created_at=datetime.now(UTC).replace(tzinfo=None))
            session.add(row)
            session.flush()
            if first:
                session.execute(update(ConversationRow).where(ConversationRow.user_id.is_(None)).values(user_id=row.id))
            return row.id

    def set_password(self, name: str, password: str) -> None:
        password_hash = _hash(password)
        with self._write.begin() as session:
            row = session.scalar(select(UserRow).where(UserRow.name == name))
            if row is None:
                raise InvalidInput(t("user.unknown", name=name))
            row.password_hash = password_hash

    def delete(self, name: str) -> list[str]:
        """Delete a user with all their conversations, and the files no one else's messages use (their sha256)."""
        with self._write.begin() as session:
            row = session.scalar(select(UserRow).where(UserRow.name == name))
            if row is None:
                raise InvalidInput(t("user.unknown", name=name))
            session.delete(row)  # conversations, messages and links follow by ON DELETE CASCADE
            session.flush()
            orphans = session.scalars(
                select(AttachmentRow).where(~AttachmentRow.sha256.in_(select(MessageAttachmentRow.attachment_sha256)))
            ).all()
            session.execute(delete(AttachmentRow).where(AttachmentRow.sha256.in_([a.sha256 for a in orphans])))
            for attachment in orphans:  # under the write lock, as in ConversationRepository.delete_conversation
                self._blobs.path_for(attachment.sha256, attachment.mime).unlink(missing_ok=True)
            return [attachment.sha256 for attachment in orphans]

    def session_key(self, name: str | None) -> str | None:
        """What a sign-in session of `name` is bound to: it changes with the password and when the user is deleted and
        added again (a digest of the salted hash, never the hash itself); None if there is no such user."""
        if not name:
            return None
        with self._read() as session:
            password_hash = session.scalar(select(UserRow.password_hash).where(UserRow.name == name))
        return None if password_hash is None else hashlib.sha256(password_hash.encode()).hexdigest()

    def verify(self, name: str, password: str) -> bool:
        from argon2.exceptions import InvalidHashError, VerificationError

        with self._read() as session:
            password_hash = session.scalar(select(UserRow.password_hash).where(UserRow.name == name))
        if password_hash is None:
            _hasher().hash(password or "")  # the same time whether or not the name exists
            return False
        try:
            return _hasher().verify(password_hash, password or "")
        except (VerificationError, InvalidHashError):
            return False


def _hash(password: str) -> str:
    if len(password or "") < limits.MIN_PASSWORD_CHARS:
        raise InvalidInput(t("user.short_password", least=limits.MIN_PASSWORD_CHARS))
    return _hasher().hash(password)
