"""The data folder: where it is, the repositories on its database and files, and tidying up what an earlier run
left there. Opened alike by the app and by the admin commands; knows nothing of models or pages."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from storage.api_keys import ApiKeyRepository
    from storage.instances import Instances
    from storage.orphans import OrphanSweeper
    from storage.repository import ConversationRepository
    from storage.transcripts import TranscriptRepository
    from storage.users import UserRepository

DATABASE_FILE = "conversations.sqlite3"  # in the data folder, unless --db names another database


def default_data_dir() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("local-assistant", appauthor=False))


def resolve_data_dir(given: Path | None) -> Path:
    """--data-dir as an absolute path, or the platform's data folder for the app."""
    return (given or default_data_dir()).expanduser().resolve()


class Storage(NamedTuple):
    conversations: ConversationRepository
    users: UserRepository
    transcripts: TranscriptRepository
    keys: ApiKeyRepository
    instances: Instances | None  # with a writer: this instance's heartbeat and the answers it writes
    orphans: OrphanSweeper  # removes stored files no message refers to (left by a kill mid-upload or mid-import)


def open_storage(data_dir: Path, db_url: str | None, writer: str | None = None) -> Storage:
    """The repositories on the database and files of `data_dir`; `writer` names this app instance."""
    from storage.api_keys import ApiKeyRepository
    from storage.blobs import BlobStore
    from storage.database import open_database, sqlite_url
    from storage.instances import Instances
    from storage.orphans import OrphanSweeper
    from storage.repository import ConversationRepository
    from storage.transcripts import TranscriptRepository
    from storage.users import UserRepository

    blobs = BlobStore(data_dir / "files")
    database = open_database(db_url or sqlite_url(data_dir / DATABASE_FILE))
    return Storage(
        ConversationRepository(database, blobs, writer=writer),
        UserRepository(database, blobs),
        TranscriptRepository(database),
        ApiKeyRepository(database),
        Instances(database, writer) if writer is not None else None,
        OrphanSweeper(database, blobs),
    )


def tidy_up(stores: Storage, uploads: Path) -> None:
    """What an earlier run left: answers it was streaming (kept, marked), stored files no message refers to (now,
    then hourly), and uploads never sent (this instance's, and those of instances no longer running)."""
    import logging

    from ui.uploads import clear_stale_uploads

    interrupted = stores.instances.start()
    if interrupted:
        logging.info("kept %d answer(s) that an earlier run left unfinished", interrupted)
    orphans, orphan_bytes = stores.orphans.start()
    if orphans:
        logging.info("removed %d stored file(s) (%.1f MB) that no message refers to", orphans, orphan_bytes / 1e6)
    stale = clear_stale_uploads(uploads.parent, uploads.name, stores.instances.alive())
    if stale:
        logging.info("deleted %d upload(s) an earlier run left unsent", stale)
