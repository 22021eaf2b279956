"""Removing stored files as the rows that link them go: a deleted conversation's files no other message uses, and
the files a failed write had already copied. Both run under the write lock, so no other writer can link one of
these files between the check and the unlink. (Files a killed app left behind are storage.orphans' job.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from storage.blobs import BlobStore, StoredBlob
from storage.schema import AttachmentRow, MessageAttachmentRow

log = logging.getLogger(__name__)


def delete_unlinked(session: Session, blobs: BlobStore, candidates: Iterable[str]) -> list[str]:
    """Delete the attachments among `candidates` (sha256s) that no message links any more, rows and files; return
    their sha256s. Call it in the write transaction that removed the links."""
    candidates = set(candidates)
    still_used = set(
        session.scalars(
            select(MessageAttachmentRow.attachment_sha256).where(MessageAttachmentRow.attachment_sha256.in_(candidates))
        ).all()
    )
    orphans = session.scalars(select(AttachmentRow).where(AttachmentRow.sha256.in_(candidates - still_used))).all()
    for attachment in orphans:
        session.delete(attachment)
    session.flush()
    # Still under the write lock, so no other writer can link one of these files meanwhile.
    for attachment in orphans:
        blobs.path_for(attachment.sha256, attachment.mime).unlink(missing_ok=True)
    return [attachment.sha256 for attachment in orphans]


def discard_unreferenced(write: sessionmaker[Session], blobs: BlobStore, stored: Sequence[StoredBlob]) -> None:
    """After a write failed: remove the files it created that no attachment row refers to. Logs, never raises: the
    caller is already reporting the failure."""
    created = [blob for blob in stored if blob.created]
    if not created:
        return
    try:
        with write.begin() as session:
            for blob in created:
                if session.get(AttachmentRow, blob.sha256) is None:
                    blobs.discard(blob)
    except Exception:
        log.exception("could not remove the files of a message that was not saved")
