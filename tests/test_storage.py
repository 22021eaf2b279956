"""Storage on a real SQLite file: round trip, content addressing, cascades, migrations."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from domain.errors import ConversationNotFound
from domain.types import MediaFile, MediaKind, Role, Status
from storage.database import create_db_engine, migrate, sqlite_url
from assistant.dialogue import make_title
from storage.instances import INTERRUPTED, Instances


@pytest.fixture
def repository(repository_on_each_database):
    """Every test here that takes `repository` runs on SQLite and on PostgreSQL."""
    return repository_on_each_database


def image(png_file, name="car.png"):
    return MediaFile(path=png_file, filename=name, kind=MediaKind.IMAGE, mime="image/png")


def audio(wav, name="q.wav"):
    return MediaFile(path=wav, filename=name, kind=MediaKind.AUDIO, mime="audio/wav")


def test_round_trip_with_attachments(repository, png_file, speech_wav):
    conversation = repository.create_conversation("Cars")
    repository.add_user_message(conversation.id, "What is this?", [audio(speech_wav), image(png_file)])
    reply = repository.start_assistant_message(conversation.id)
    repository.update_message_text(reply.id, "A red")
    repository.finish_message(reply.id, "A red car.", Status.COMPLETE)

    user, answer = repository.get_messages(conversation.id)
    assert (user.role, user.text, user.status) == (Role.USER, "What is this?", Status.COMPLETE)
    assert [(a.kind, a.filename) for a in user.attachments] == [(MediaKind.AUDIO, "q.wav"), (MediaKind.IMAGE, "car.png")]
    assert user.attachments[1].path.read_bytes() == png_file.read_bytes()
    assert user.attachments[0].path.read_bytes() == speech_wav.read_bytes()
    assert (answer.role, answer.text, answer.status) == (Role.ASSISTANT, "A red car.", Status.COMPLETE)


def count(url: str, sql: str, **params) -> int:
    with create_db_engine(url).connect() as connection:
        return connection.execute(text(sql), params).scalar()


def test_same_image_twice_is_stored_once(repository, png_file, tmp_path, database_url):
    conversation = repository.create_conversation("Twice")
    repository.add_user_message(conversation.id, "one", [image(png_file, "a.png")])
    repository.add_user_message(conversation.id, "two", [image(png_file, "b.png"), image(png_file, "c.png")])

    blobs = [p for p in (tmp_path / "files").rglob("*") if p.is_file()]
    assert len(blobs) == 1
    assert count(database_url, "select count(*) from attachment") == 1
    assert count(database_url, "select count(*) from message_attachment") == 3
    names = [a.filename for m in repository.get_messages(conversation.id) for a in m.attachments]
    assert names == ["a.png", "b.png", "c.png"]


def test_conversations_are_listed_newest_first(repository):
    first = repository.create_conversation("first")
    second = repository.create_conversation("second")
    assert [c.title for c in repository.list_conversations()] == ["second", "first"]
    repository.add_user_message(first.id, "bump", [])
    assert [c.id for c in repository.list_conversations()] == [first.id, second.id]


def test_titles_come_from_the_first_line():
    assert make_title("\n  Hello there\nsecond line", []) == "Hello there"
    long = make_title("word " * 40, [])
    assert len(long) <= 60 and long.endswith("…")


def test_unknown_conversation_is_an_error_not_none(repository):
    with pytest.raises(ConversationNotFound):
        repository.get_messages("nope")


def test_deleting_a_conversation_cascades(repository, png_file, database_url):
    conversation = repository.create_conversation("gone")
    repository.add_user_message(conversation.id, "x", [image(png_file)])
    engine = create_db_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("delete from conversation"))
        assert connection.execute(text("select count(*) from message")).scalar() == 0
        assert connection.execute(text("select count(*) from message_attachment")).scalar() == 0


def test_an_instance_marks_only_the_answers_no_live_instance_is_writing(database_url, tmp_path):
    """Two app instances on one database: one that starts again marks its earlier run's unfinished answers (and
    those written before writers were recorded), text kept, but not the answer the other is still writing; that
    one is marked by a later beat once the other has stopped beating."""
    from storage.blobs import BlobStore
    from storage.database import open_database
    from storage.repository import ConversationRepository

    database = open_database(database_url)

    def instance(name: str):
        return ConversationRepository(database, BlobStore(tmp_path / "files"), writer=name), Instances(database, name)

    (first, first_beats), (second, second_beats) = instance("host:7860"), instance("host:7861")
    assert first_beats.start(interval_s=3600) == 0 and second_beats.start(interval_s=3600) == 0
    conversation = first.create_conversation("two instances")
    crashed = first.start_assistant_message(conversation.id)
    first.update_message_text(crashed.id, "half an ans")
    live = second.start_assistant_message(conversation.id, parent_id=None)
    legacy = ConversationRepository(database, BlobStore(tmp_path / "files")).start_assistant_message(conversation.id, parent_id=None)
    done = second.start_assistant_message(conversation.id, parent_id=None)
    second.finish_message(done.id, "all of it", Status.COMPLETE)

    restarted = Instances(database, "host:7860")
    assert restarted.start(interval_s=3600) == 2  # its own earlier answer and the one with no writer

    def state(message_id):
        message = first.get_message(message_id)
        return message.text, message.status, message.error

    assert state(crashed.id) == ("half an ans", Status.ERROR, INTERRUPTED)
    assert state(legacy.id) == ("", Status.ERROR, INTERRUPTED)
    assert state(live.id)[1] is Status.STREAMING
    assert state(done.id) == ("all of it", Status.COMPLETE, None)
    second_beats.beat()
    assert restarted.mark_interrupted() == 0  # the second instance beats: its answer is left alone
    # Seen from later on, when every beat of the second instance is older than the staleness limit.
    assert Instances(database, "host:7860", stale_s=0).mark_interrupted() == 1
    assert state(live.id)[1:] == (Status.ERROR, INTERRUPTED)
    for beats in (first_beats, second_beats, restarted):
        beats.stop()


def test_migration_from_empty_to_head_and_back(tmp_path):
    engine = create_db_engine(sqlite_url(tmp_path / "fresh.sqlite3"))
    migrate(engine)
    tables = set(inspect(engine).get_table_names())
    assert {"conversation", "message", "attachment", "message_attachment", "alembic_version"} <= tables
    with engine.connect() as connection:
        assert connection.execute(text("select version_num from alembic_version")).scalar() == "0009"
        assert connection.execute(text("pragma journal_mode")).scalar() == "wal"
        assert connection.execute(text("pragma foreign_keys")).scalar() == 1
    indexes = {i["name"] for i in inspect(engine).get_indexes("conversation")}
    assert "ix_conversation_updated_at" in indexes
    migrate(engine)  # at head already: a no-op, as at every later startup
    downgrade_to_base(engine)
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}


def test_orm_schema_matches_the_migration(tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from storage.schema import Base

    engine = create_db_engine(sqlite_url(tmp_path / "cmp.sqlite3"))
    migrate(engine)
    with engine.connect() as connection:
        # The FTS5 index (a virtual table and its shadow tables) is SQL the ORM cannot declare. And SQLAlchemy
        # reads ON DELETE only from table-level FOREIGN KEY clauses, not from the column-level REFERENCES that
        # revision 0003 adds to message.parent_id; the pragma below checks that constraint instead.
        def include(obj, name, kind, reflected, compare_to):
            column_level = {("message", "parent_id"), ("conversation", "user_id")}
            return not (kind == "foreign_key_constraint" and any(
                obj.table.name == table and column in obj.column_keys for table, column in column_level
            ))

        context = MigrationContext.configure(
            connection,
            opts={
                "include_name": lambda name, kind, parent: not (name or "").startswith(("message_fts", "transcript_fts")),
                "include_object": include,
            },
        )
        diff = compare_metadata(context, Base.metadata)
        fks = connection.exec_driver_sql("PRAGMA foreign_key_list(message)").fetchall()
    assert diff == []
    assert ("message", "parent_id", "id", "CASCADE") in [(fk[2], fk[3], fk[4], fk[6]) for fk in fks]


def test_concurrent_writers_to_one_conversation_never_collide(repository):
    import threading

    conversation = repository.create_conversation("busy")
    failures: list[BaseException] = []
    start = threading.Barrier(6)

    def writer(n: int) -> None:
        start.wait()
        for i in range(100):
            try:
                if i % 2:
                    repository.add_user_message(conversation.id, f"{n}-{i}", [])
                else:
                    reply = repository.start_assistant_message(conversation.id)
                    repository.finish_message(reply.id, f"{n}-{i}", Status.COMPLETE)
            except BaseException as error:  # collected, so that one failure does not hide the count
                failures.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    messages = repository.get_messages(conversation.id)
    assert len(messages) == 600
    assert sorted(m.text for m in messages) == sorted(f"{n}-{i}" for n in range(6) for i in range(100))


def test_a_damaged_blob_on_disk_is_replaced_not_trusted(repository, png_file, tmp_path):
    conversation = repository.create_conversation("power cut")
    [stored] = repository.add_user_message(conversation.id, "one", [image(png_file)]).attachments
    stored.path.write_bytes(b"")  # what a power cut between write and rename could leave
    repository.add_user_message(conversation.id, "again", [image(png_file)])
    assert stored.path.read_bytes() == png_file.read_bytes()
    # Same size, different bytes: caught by the hash.
    data = bytearray(png_file.read_bytes())
    data[-5] ^= 0xFF
    stored.path.write_bytes(bytes(data))
    repository.add_user_message(conversation.id, "and again", [image(png_file)])
    assert stored.path.read_bytes() == png_file.read_bytes()


def test_blobs_are_written_through_a_temporary_file_and_fsynced(tmp_path, png_file, monkeypatch):
    import os

    from storage.blobs import BlobStore

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    blob = BlobStore(tmp_path / "files").put(png_file, "image/png")
    assert blob.created and blob.path.read_bytes() == png_file.read_bytes()
    # The file's bytes before the rename (under its temporary name), then the folder holding the new name.
    assert len(synced) == 2 and ".incoming-" in synced[0] and synced[1] == str(blob.path.parent)
    assert not list(blob.path.parent.glob(".incoming-*"))


def test_every_conversation_is_listed(repository):
    for i in range(520):
        repository.create_conversation(f"chat {i}")
    titles = [c.title for c in repository.list_conversations()]
    assert len(titles) == 520 and titles[-1] == "chat 0"


def test_migrations_run_on_postgresql_up_down_and_up_again(postgres):
    engine = create_db_engine(postgres.new_database())
    migrate(engine)
    tables = set(inspect(engine).get_table_names())
    assert {"conversation", "message", "attachment", "transcript", "api_key", "alembic_version"} <= tables
    indexes = {i["name"] for i in inspect(engine).get_indexes("message")}
    assert {"ix_message_content_trgm", "ix_message_content_words"} <= indexes
    downgrade_to_base(engine)
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    migrate(engine)
    assert "api_key" in inspect(engine).get_table_names()


def downgrade_to_base(engine) -> None:
    from alembic import command
    from alembic.config import Config

    from storage.database import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")


def test_stored_files_no_row_refers_to_are_removed_once_older_than_the_grace_period(repository, png_file, tmp_path):
    import os
    import time

    from storage.orphans import GRACE_S, OrphanSweeper

    blobs = repository._blobs
    conversation = repository.create_conversation("files")
    [linked] = repository.add_user_message(conversation.id, "kept", [image(png_file)]).attachments
    def put(data: bytes):
        source = tmp_path / f"blob-{len(data)}"
        source.write_bytes(data)
        return blobs.put(source, "image/png").path

    orphan = put(b"written, then the app was killed before its row was")
    young = put(b"written a moment ago: its transaction may still be running")
    revived = put(b"an old orphan that is sent again")
    temporary = orphan.parent / ".incoming-k1ll3d"
    temporary.write_bytes(b"half a file")
    unknown = orphan.parent / "notes.txt"  # not a name this store gives: none of its business
    unknown.write_bytes(b"x")
    stale = time.time() - GRACE_S - 60
    for path in (linked.path, orphan, revived, temporary, unknown):
        os.utime(path, (stale, stale))
    resent = tmp_path / "resent.png"
    resent.write_bytes(revived.read_bytes())
    repository.add_user_message(conversation.id, "again", [MediaFile(resent, "resent.png", MediaKind.IMAGE, "image/png")])

    sweeper = OrphanSweeper(repository._database, blobs)
    orphan_bytes, young_bytes = orphan.stat().st_size, young.stat().st_size
    assert sweeper.sweep() == (2, orphan_bytes + len(b"half a file"))
    assert not orphan.exists() and not temporary.exists()
    assert linked.path.is_file() and young.is_file() and revived.is_file() and unknown.is_file()
    assert sweeper.sweep() == (0, 0)
    assert OrphanSweeper(repository._database, blobs, grace_s=0).sweep() == (1, young_bytes)
    assert not young.exists() and linked.path.is_file() and revived.is_file()


def test_a_kill_mid_import_leaves_files_that_the_sweep_removes_and_nothing_else(tmp_path, png_file):
    """A real SIGKILL while an import writes its second file: the first is whole but no row refers to it, the second
    is a temporary file. Both stay while young (its transaction could have been running), then go."""
    import subprocess
    import sys

    from storage.blobs import BlobStore
    from storage.database import open_database, sqlite_url
    from storage.orphans import OrphanSweeper
    from storage.repository import ConversationRepository
    from tests.helpers import ROOT

    script = f"""
import os, signal, sys
sys.path.insert(0, {str(ROOT)!r})
from domain.types import MediaKind, Role
from storage.blobs import BlobStore
from storage.database import open_database, sqlite_url
from storage.interchange import ImportedConversation, ImportedFile, ImportedMessage
from storage.repository import ConversationRepository

repository = ConversationRepository(open_database(sqlite_url({str(tmp_path / 'db.sqlite3')!r})), BlobStore({str(tmp_path / 'files')!r}))
repository.create_conversation("already there")
import hashlib, pathlib
files = []
for n in (1, 2):
    source = pathlib.Path({str(tmp_path)!r}) / f"source-{{n}}.png"
    source.write_bytes(bytes([n]) * 5000)
    files.append(ImportedFile(source, hashlib.sha256(source.read_bytes()).hexdigest(), f"{{n}}.png", kind=MediaKind.IMAGE, mime="image/png"))
synced = []
real_fsync = os.fsync
def fsync(fd):
    synced.append(fd)
    if len(synced) == 3:  # the second file's bytes: the first is renamed into place, with its folder synced
        os.kill(os.getpid(), signal.SIGKILL)
    real_fsync(fd)
os.fsync = fsync
repository.import_conversations([ImportedConversation("big", [ImportedMessage("0", None, Role.USER, "two files", files=files)], "0")])
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr
    left = sorted(p.name for p in (tmp_path / "files").rglob("*") if p.is_file())
    assert len(left) == 2 and left[0].startswith(".incoming-") and left[1].endswith(".png")
    database = open_database(sqlite_url(tmp_path / "db.sqlite3"))
    assert [c.title for c in ConversationRepository(database, BlobStore(tmp_path / "files")).list_conversations()] == ["already there"]
    assert OrphanSweeper(database, BlobStore(tmp_path / "files")).sweep() == (0, 0)  # young: could be in flight
    assert OrphanSweeper(database, BlobStore(tmp_path / "files"), grace_s=0).sweep() == (2, 10_000)
    assert [p for p in (tmp_path / "files").rglob("*") if p.is_file()] == []


def test_a_postgresql_server_that_is_away_is_a_fault_of_the_machine_not_a_bug(postgres, tmp_path):
    import psycopg

    from domain.errors import ServiceUnavailable
    from storage.blobs import BlobStore
    from storage.database import open_database
    from storage.faults import DATABASE_AWAY
    from storage.repository import ConversationRepository
    from tests.helpers import free_port

    url = postgres.new_database()
    repository = ConversationRepository(open_database(url), BlobStore(tmp_path / "files"))
    repository.create_conversation("before the restart")
    # The server ends every connection to the database (a restart, a failover, an administrator).
    with psycopg.connect(f"host=127.0.0.1 port={postgres.port} user=postgres dbname=postgres", autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (url.rsplit("/", 1)[1],))
    with pytest.raises(ServiceUnavailable) as dropped:
        repository.list_conversations()
    assert str(dropped.value) == str(DATABASE_AWAY) and dropped.value.retry_after_s > 0
    assert [c.title for c in repository.list_conversations()] == ["before the restart"]  # a new connection, once it is back
    with pytest.raises(ServiceUnavailable) as refused:  # nothing listens there at all
        open_database(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere")
    assert str(refused.value) == str(DATABASE_AWAY)
