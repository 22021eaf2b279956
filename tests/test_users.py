"""Accounts in storage: argon2 passwords, the first user adopting earlier chats, and each user seeing only their own."""

from __future__ import annotations

import pytest

from domain.errors import ConversationNotFound, InvalidInput, MessageNotFound
from domain.types import MediaFile, MediaKind, Status
from tests.media_factory import png


@pytest.fixture
def users(repository, tmp_path):
    from storage.database import open_database, sqlite_url
    from storage.users import UserRepository

    return UserRepository(open_database(sqlite_url(tmp_path / "db.sqlite3")), repository._blobs)


def test_passwords_are_argon2_hashes_and_verify(users, tmp_path):
    import sqlite3

    users.add("alice", "correct horse")
    [(stored,)] = sqlite3.connect(tmp_path / "db.sqlite3").execute("select password_hash from app_user").fetchall()
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert users.verify("alice", "correct horse")
    assert not users.verify("alice", "wrong horse") and not users.verify("bob", "correct horse")
    users.set_password("alice", "battery staple")
    assert users.verify("alice", "battery staple") and not users.verify("alice", "correct horse")


@pytest.mark.parametrize(
    "name, password, message",
    [("", "long enough", "user name is"), ("../x", "long enough", "user name is"), ("alice", "short", "at least 8")],
)
def test_bad_names_and_short_passwords_are_refused(users, name, password, message):
    with pytest.raises(InvalidInput, match=message):
        users.add(name, password)
    assert not users.any()


def test_the_first_user_takes_over_earlier_chats_and_each_user_sees_only_their_own(users, repository, tmp_path):
    earlier = repository.add_user_message(None, "from before accounts", [MediaFile(png(tmp_path / "a.png"), "a.png", MediaKind.IMAGE, "image/png")])
    alice_id = users.add("alice", "alice password")
    bob_id = users.add("bob", "bob's password")
    alice, bob, nobody = repository.for_owner(alice_id), repository.for_owner(bob_id), repository.for_owner(None)
    assert [c.id for c in alice.list_conversations()] == [earlier.conversation_id]
    assert bob.list_conversations() == [] and nobody.list_conversations() == []

    secret = bob.add_user_message(None, "bob's secret plan", [MediaFile(png(tmp_path / "b.png", color=(0, 0, 255)), "b.png", MediaKind.IMAGE, "image/png")])
    reply = bob.start_assistant_message(secret.conversation_id, parent_id=secret.id)
    bob.finish_message(reply.id, "noted", Status.COMPLETE)
    [attachment] = secret.attachments
    # Alice cannot list, open, search, export, change or download anything of Bob's.
    assert [c.id for c in alice.list_conversations()] == [earlier.conversation_id]
    for action in (
        lambda: alice.get_messages(secret.conversation_id),
        lambda: alice.rename_conversation(secret.conversation_id, "mine now"),
        lambda: alice.delete_conversation(secret.conversation_id),
        lambda: alice.add_user_message(secret.conversation_id, "hi", []),
        lambda: alice.export_conversations([secret.conversation_id]),
    ):
        with pytest.raises(ConversationNotFound):
            action()
    for action in (lambda: alice.get_message(reply.id), lambda: alice.fork(reply.id), lambda: alice.edit_user_message(secret.id, "x")):
        with pytest.raises(MessageNotFound):
            action()
    assert alice.search("secret plan") == [] and [h.message_id for h in bob.search("secret plan")] == [secret.id]
    assert [c.title for c in alice.export_conversations()] == ["New chat"]
    assert alice.attachment_file(attachment.sha256) is None and bob.attachment_file(attachment.sha256).path == attachment.path


def test_deleting_a_user_deletes_their_chats_and_their_files_only(users, repository, tmp_path):
    shared = png(tmp_path / "shared.png")
    alice, bob = repository.for_owner(users.add("alice", "alice password")), repository.for_owner(users.add("bob", "bob's password"))
    alice.add_user_message(None, "mine", [MediaFile(shared, "s.png", MediaKind.IMAGE, "image/png")])
    own = bob.add_user_message(None, "bob's", [MediaFile(shared, "s.png", MediaKind.IMAGE, "image/png"), MediaFile(png(tmp_path / "own.png", color=(9, 9, 9)), "o.png", MediaKind.IMAGE, "image/png")])
    shared_path, own_path = (a.path for a in own.attachments)
    users.delete("bob")
    assert users.names() == ["alice"] and not users.verify("bob", "bob's password")
    assert bob.list_conversations() == [] and bob.search("bob") == []
    assert shared_path.exists() and not own_path.exists()
    assert [c.title for c in alice.list_conversations()] == ["New chat"]


def test_api_keys_are_kept_only_as_hashes_belong_to_one_user_and_go_with_them(tmp_path):
    from sqlalchemy import text

    from cli.data import open_storage

    storage = open_storage(tmp_path, None)
    users, keys = storage.users, storage.keys
    alice, bob = users.add("alice", "a-long-password"), users.add("bob", "a-long-password")
    record, key = keys.create(alice, "  my   editor ")
    assert record.name == "my editor" and key.startswith(record.prefix) and len(key) > 40
    assert keys.user_of(key) == alice and keys.list(alice)[0].last_used_at is not None
    assert keys.user_of(key[:-1]) is None and keys.user_of("") is None and keys.user_of(None) is None
    database = tmp_path / "conversations.sqlite3"
    assert key.encode() not in database.read_bytes()  # only its SHA-256 was written
    with pytest.raises(InvalidInput):
        keys.revoke(bob, record.id)  # not bob's
    assert keys.user_of(key) == alice
    users.delete("alice")
    assert keys.user_of(key) is None
    from storage.database import open_database, sqlite_url

    with open_database(sqlite_url(database)).read() as session:
        assert session.execute(text("select count(*) from api_key")).scalar() == 0
