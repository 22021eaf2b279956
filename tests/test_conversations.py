"""Managing conversations in storage: pin, archive, rename, delete with its files, search, and the 0002 upgrade."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest
from sqlalchemy import text

from domain.errors import ConversationNotFound, InvalidInput
from domain.types import MediaFile, MediaKind, Status
from storage.database import create_db_engine, migrate, sqlite_url
from tests.media_factory import png


@pytest.fixture
def repository(repository_on_each_database):
    """Every test here that takes `repository` runs on SQLite and on PostgreSQL."""
    return repository_on_each_database


def image(path, name="p.png"):
    return MediaFile(path=path, filename=name, kind=MediaKind.IMAGE, mime="image/png")


def chat(repository, title, *texts, files=()):
    conversation = repository.create_conversation(title)
    for i, said in enumerate(texts):
        repository.add_user_message(conversation.id, said, files if i == 0 else [])
        reply = repository.start_assistant_message(conversation.id)
        repository.finish_message(reply.id, f"reply {i}", Status.COMPLETE)
    return conversation


def test_pinned_first_then_newest_and_archived_apart(repository):
    old, middle, new = (chat(repository, t, "hi") for t in ("old", "middle", "new"))
    repository.set_pinned(old.id, True)
    repository.set_archived(middle.id, True)
    assert [(c.title, c.pinned) for c in repository.list_conversations()] == [("old", True), ("new", False)]
    assert [c.title for c in repository.list_conversations(archived=True)] == ["middle"]
    repository.set_archived(middle.id, False)
    repository.set_pinned(old.id, False)
    assert [c.title for c in repository.list_conversations()] == ["new", "middle", "old"]


def test_rename_keeps_the_order_and_refuses_an_empty_title(repository):
    first = chat(repository, "first", "a")
    chat(repository, "second", "b")
    assert repository.rename_conversation(first.id, "  Trip   to Rome \n").title == "Trip to Rome"
    assert [c.title for c in repository.list_conversations()] == ["second", "Trip to Rome"]
    with pytest.raises(InvalidInput, match="needs a title"):
        repository.rename_conversation(first.id, " \n ")
    with pytest.raises(ConversationNotFound):
        repository.rename_conversation("nope", "x")


def test_delete_removes_messages_and_only_the_files_nobody_else_uses(repository, tmp_path, database_url):
    shared, own = png(tmp_path / "shared.png"), png(tmp_path / "own.png", color=(0, 0, 255))
    keep = chat(repository, "keep", "look", files=[image(shared)])
    gone = chat(repository, "gone", "look", "again", files=[image(shared), image(own)])
    shared_blob, own_blob = repository.get_messages(gone.id)[0].attachments
    assert len(repository.delete_conversation(gone.id)) == 1
    assert not own_blob.path.exists() and shared_blob.path.exists()
    assert [c.id for c in repository.list_conversations()] == [keep.id]
    with pytest.raises(ConversationNotFound):
        repository.get_messages(gone.id)
    with create_db_engine(database_url).connect() as connection:
        assert connection.execute(text("select count(*) from message where conversation_id = :c"), {"c": gone.id}).scalar() == 0
        assert connection.execute(text("select count(*) from attachment")).scalar() == 1
    assert repository.search("again") == []  # the index forgot it too
    assert repository.get_messages(keep.id)[0].attachments[0].path.read_bytes() == shared.read_bytes()


def test_search_finds_any_message_text_with_a_snippet(repository):
    trip = chat(repository, "Holidays", "Where should we go?", "What about the Colosseum in Rome at night?")
    chat(repository, "Cooking", "How long do I boil an egg?")
    [hit] = repository.search("colosseum")
    assert (hit.conversation_id, hit.conversation_title) == (trip.id, "Holidays")
    assert "Colosseum in Rome" in hit.snippet
    assert [h.snippet for h in repository.search("how long DO")] == ["How long do I boil an egg?"]
    assert repository.search("nothing like this") == [] and repository.search("   ") == []


@pytest.mark.parametrize("query", ["北京", "长城", "京看长", "東京タワー", "한국어"])
def test_search_finds_substrings_of_text_without_spaces(repository, query):
    cjk = chat(repository, "CJK", "我们今天去北京看长城", "東京タワーに行きました", "한국어를 공부합니다")
    hits = repository.search(query)
    assert [h.conversation_id for h in hits] == [cjk.id] and query in hits[0].snippet


def test_search_treats_wildcards_literally(repository):
    chat(repository, "percent", "100% sure", "snake_case name")
    assert len(repository.search("100%")) == 1 and repository.search("1000%") == []
    assert len(repository.search("e_c")) == 1 and repository.search("e%c") == []


def test_the_index_follows_edits_of_a_streaming_answer(repository):
    conversation = repository.create_conversation("live")
    reply = repository.start_assistant_message(conversation.id)
    repository.update_message_text(reply.id, "partial words")
    assert [h.message_id for h in repository.search("partial")] == [reply.id]
    repository.finish_message(reply.id, "final words", Status.COMPLETE)
    assert repository.search("partial") == []
    assert [h.message_id for h in repository.search("final")] == [reply.id]


def test_upgrading_a_0001_database_keeps_everything_and_indexes_it(tmp_path, png_file):
    from storage.blobs import BlobStore
    from storage.database import open_database
    from storage.repository import ConversationRepository

    path = tmp_path / "old.sqlite3"
    engine = create_db_engine(sqlite_url(path))
    migrate(engine, "0001")
    db = sqlite3.connect(path)
    db.execute("insert into conversation values ('c1', 'Old chat', '2025-01-01 10:00:00', '2025-01-02 10:00:00')")
    db.execute(
        "insert into message (conversation_id, position, role, content, status, error, created_at, updated_at) values "
        "('c1', 0, 'user', 'what is in this photo of Kyoto?', 'complete', null, '2025-01-01 10:00:00', '2025-01-01 10:00:00'),"
        "('c1', 1, 'assistant', 'A temple.', 'complete', null, '2025-01-01 10:00:01', '2025-01-01 10:00:01')"
    )
    blobs = BlobStore(tmp_path / "files")
    blob = blobs.put(png_file, "image/png")
    db.execute("insert into attachment values (?, 'image', 'image/png', ?, '2025-01-01 10:00:00')", (blob.sha256, blob.size))
    db.execute("insert into message_attachment values (1, 0, ?, 'kyoto.png')", (blob.sha256,))
    db.commit()
    db.close()
    engine.dispose()

    repository = ConversationRepository(open_database(sqlite_url(path)), blobs)  # upgrades to head
    [conversation] = repository.list_conversations()
    assert (conversation.title, conversation.pinned, conversation.archived) == ("Old chat", False, False)
    question, answer = repository.get_messages("c1")
    assert (question.text, answer.text) == ("what is in this photo of Kyoto?", "A temple.")
    assert [(a.filename, a.sha256) for a in question.attachments] == [("kyoto.png", blob.sha256)]
    assert [h.message_id for h in repository.search("kyoto")] == [question.id]  # old messages are searchable


def test_five_hundred_conversations_list_quickly_enough_to_use(repository):
    for i in range(500):
        repository.create_conversation(f"chat {i}")
    conversations = repository.list_conversations()
    assert len(conversations) == 500 and conversations[0].title == "chat 499"


# --- the tree: regenerate, edit, fork ---------------------------------------------------------------------


def turn(repository, conversation_id, text, answer, parent=None):
    from storage.records import LEAF

    user = repository.add_user_message(conversation_id, text, [], parent_id=LEAF if parent is None else parent)
    reply = repository.start_assistant_message(conversation_id, parent_id=user.id)
    repository.finish_message(reply.id, answer, Status.COMPLETE)
    return user, repository.get_message(reply.id)


def texts(messages):
    return [m.text for m in messages]


def test_regenerated_answers_are_versions_of_one_turn(repository):
    conversation = repository.create_conversation("tree")
    q1, a1 = turn(repository, conversation.id, "q1", "a1")
    again = repository.start_assistant_message(conversation.id, parent_id=q1.id)
    repository.finish_message(again.id, "a1 again", Status.COMPLETE)
    path = repository.get_messages(conversation.id)
    assert texts(path) == ["q1", "a1 again"]
    assert (path[1].version, path[1].versions) == (2, 2)
    repository.switch_version(again.id, -1)
    path = repository.get_messages(conversation.id)
    assert texts(path) == ["q1", "a1"] and (path[1].version, path[1].versions) == (1, 2)
    repository.switch_version(a1.id, -1)  # before the first: nothing changes
    assert texts(repository.get_messages(conversation.id)) == ["q1", "a1"]


def test_editing_a_question_branches_and_the_old_branch_stays_reachable(repository, png_file):
    conversation = repository.create_conversation("tree")
    q1 = repository.add_user_message(conversation.id, "look", [MediaFile(png_file, "p.png", MediaKind.IMAGE, "image/png")])
    a1 = repository.start_assistant_message(conversation.id, parent_id=q1.id)
    repository.finish_message(a1.id, "a red square", Status.COMPLETE)
    turn(repository, conversation.id, "and the colour?", "red")
    edited = repository.edit_user_message(q1.id, "look closely")
    assert [a.sha256 for a in edited.attachments] == [a.sha256 for a in q1.attachments]  # files kept
    path = repository.get_messages(conversation.id)
    assert texts(path) == ["look closely"] and (path[0].version, path[0].versions) == (2, 2)
    repository.switch_version(edited.id, -1)  # back to the old branch, down to its latest message
    assert texts(repository.get_messages(conversation.id)) == ["look", "a red square", "and the colour?", "red"]
    repository.switch_version(q1.id, +1)
    assert texts(repository.get_messages(conversation.id)) == ["look closely"]


def test_fork_copies_the_path_up_to_a_message(repository):
    conversation = repository.create_conversation("Origin")
    q1, a1 = turn(repository, conversation.id, "q1", "a1")
    turn(repository, conversation.id, "q2", "a2")
    fork = repository.fork(a1.id)
    assert fork.title == "Origin (fork)" and fork.id != conversation.id
    forked = repository.get_messages(fork.id)
    assert texts(forked) == ["q1", "a1"] and all(m.conversation_id == fork.id for m in forked)
    turn(repository, fork.id, "q2 in the fork", "other")
    assert texts(repository.get_messages(conversation.id)) == ["q1", "a1", "q2", "a2"]  # the original is untouched


def test_upgrading_a_0002_database_turns_history_into_one_branch(tmp_path):
    from storage.blobs import BlobStore
    from storage.database import open_database
    from storage.repository import ConversationRepository

    path = tmp_path / "v2.sqlite3"
    engine = create_db_engine(sqlite_url(path))
    migrate(engine, "0002")
    db = sqlite3.connect(path)
    db.execute("insert into conversation (id, title, created_at, updated_at) values ('c1', 'Two turns', '2025-01-01', '2025-01-01')")
    for position, (role, content) in enumerate([("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "a2")]):
        db.execute(
            "insert into message (conversation_id, position, role, content, status, created_at, updated_at) "
            "values ('c1', ?, ?, ?, 'complete', '2025-01-01', '2025-01-01')",
            (position, role, content),
        )
    db.commit()
    db.close()
    engine.dispose()
    repository = ConversationRepository(open_database(sqlite_url(path)), BlobStore(tmp_path / "files"))
    path_messages = repository.get_messages("c1")
    assert texts(path_messages) == ["q1", "a1", "q2", "a2"]
    assert [m.parent_id for m in path_messages] == [None] + [m.id for m in path_messages[:-1]]
    turn(repository, "c1", "q3", "a3")  # continues from the old leaf
    assert texts(repository.get_messages("c1"))[-2:] == ["q3", "a3"]


def test_an_api_clients_history_is_stored_as_one_branch_with_its_files_and_settings(repository, png_file, tmp_path):
    from domain.settings import GenerationSettings
    from domain.types import HistoryTurn, Role

    settings = GenerationSettings(system_prompt="Be brief.", temperature=0.0)
    turns = [HistoryTurn(Role.USER, "look", (image(png_file),)), HistoryTurn(Role.ASSISTANT, "a red square"),
             HistoryTurn(Role.USER, "and?")]  # fmt: skip
    stored = repository.store_history(turns, "From the API", settings)
    assert (stored.title, stored.settings) == ("From the API", settings)
    path = repository.get_messages(stored.id)
    assert [(m.role, m.text, m.status) for m in path] == [(t.role, t.text, Status.COMPLETE) for t in turns]
    assert [m.parent_id for m in path] == [None, path[0].id, path[1].id]
    assert [a.filename for a in path[0].attachments] == ["p.png"] and path[0].attachments[0].path.read_bytes() == png_file.read_bytes()

    # A file that cannot be stored leaves neither the conversation nor the files stored before it.
    before = {c.id for c in repository.list_conversations()}
    missing = image(tmp_path / "gone.png")
    other = png(tmp_path / "other.png", color=(1, 2, 3))
    with pytest.raises(FileNotFoundError):
        repository.store_history([HistoryTurn(Role.USER, "two", (image(other), missing))], "Broken", settings)
    assert {c.id for c in repository.list_conversations()} == before
    assert not repository._blobs.path_for(hashlib.sha256(other.read_bytes()).hexdigest(), "image/png").exists()
