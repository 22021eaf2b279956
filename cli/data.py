"""The data folder: where it is, and the repositories on its database and files. Opened alike by the app and by
the admin commands; knows nothing of models or pages."""

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
