"""The page's handler on the real dialogue manager and engine, without a browser."""

from __future__ import annotations

import inspect
import time
from types import SimpleNamespace

import gradio as gr
import pytest

from assistant.dialogue import DialogueManager
from assistant.media import MediaLoader
from assistant.turn_queue import TurnQueue
from tests.engine_helpers import RecordingEngine, ready_host
from ui import render
from ui.app import MIN_UPDATE_INTERVAL_S, ChatHandlers


def test_answer_updates_are_coalesced_and_the_last_one_is_the_saved_answer(engine, repository):
    long = RecordingEngine(engine, max_new_tokens=300)
    handlers = ChatHandlers(DialogueManager(repository, ready_host(long), MediaLoader(), TurnQueue()), None, demo=True)
    stamps, updates = [], []
    for update in handlers.respond(
        {"text": "Tell me a long story", "files": []}, None, False, SimpleNamespace(session_hash="s"), "", None, None, None, None
    ):
        stamps.append(time.monotonic())
        updates.append(update)
    [conversation] = repository.list_conversations()
    answer = repository.get_messages(conversation.id)[-1]
    # The final update carries the whole saved answer, with its footer (the fork link).
    assert updates[-1][0][-1]["content"] == answer.text + render.message_footer(answer)
    tokens = len(engine.processor.tokenizer(answer.text)["input_ids"])
    streamed = stamps[1:-1]  # between the user's turn and the final update
    assert 1 < len(streamed) < tokens  # coalesced: fewer updates than tokens, but still streaming
    # At most one update per MIN_UPDATE_INTERVAL_S, counted over the whole turn: the handler stamps each update after
    # our first stamp and before our last, so a loaded machine (a slower answer) only loosens this, never breaks it.
    assert len(streamed) - 1 <= (stamps[-1] - stamps[0]) / MIN_UPDATE_INTERVAL_S
    shown = [u[0][-1]["content"] for u in updates[1:-1]]
    assert all(b.startswith(a) for a, b in zip(shown, shown[1:]))  # each update is the answer so far


def test_another_users_conversation_is_not_found_through_the_page(engine, repository, tmp_path):
    import gradio as gr
    import pytest

    from storage.database import open_database, sqlite_url
    from storage.users import UserRepository

    users = UserRepository(open_database(sqlite_url(tmp_path / "db.sqlite3")), repository._blobs)
    users.add("alice", "alice's password")
    users.add("bob", "bob's password")
    manager = DialogueManager(repository, ready_host(engine), MediaLoader(), TurnQueue())
    handlers = ChatHandlers(manager, None, demo=True, owner_of=users.id_of)
    as_alice = SimpleNamespace(session_hash="a", username="alice")
    as_bob = SimpleNamespace(session_hash="b", username="bob")
    updates = list(handlers.respond({"text": "Alice's plan", "files": []}, None, False, as_alice, "", "", "", "", ""))
    conversation_id = updates[0][2]  # the first update names the new conversation
    answer_id = repository.for_owner(users.id_of("alice")).get_messages(conversation_id)[-1].id

    assert handlers.open_conversation(conversation_id, as_alice)[0] == conversation_id
    with pytest.raises(gr.Error, match="does not exist"):
        handlers.open_conversation(conversation_id, as_bob)
    with pytest.raises(gr.Error, match="does not exist"):
        handlers.branch_action(f"{answer_id}:fork:1", None, False, as_bob)
    with pytest.raises(gr.Error, match="does not exist"):
        list(handlers.respond({"text": "mine now", "files": []}, conversation_id, False, as_bob, "", "", "", "", ""))
    assert handlers.sidebar.search("Alice", as_bob).choices == []
    assert len(handlers.sidebar.search("Alice", as_alice).choices) == 1


def page_turn(handlers, text, conversation_id=None, files=()):
    return list(handlers.respond({"text": text, "files": list(files)}, conversation_id, False,
                                 SimpleNamespace(session_hash="s"), "", "", "", "", ""))


def test_a_busy_database_or_a_full_disk_is_said_as_such_and_a_fault_of_the_app_names_no_internals(
    engine, tmp_path, monkeypatch, png_file
):
    import sqlite3

    import gradio as gr
    import pytest

    import storage.blobs
    import storage.database
    from storage.blobs import BlobStore
    from storage.database import open_database, sqlite_url
    from storage.repository import ConversationRepository

    monkeypatch.setattr(storage.database, "BUSY_TIMEOUT_S", 0.5, raising=False)
    repository = ConversationRepository(open_database(sqlite_url(tmp_path / "db.sqlite3")), BlobStore(tmp_path / "files"))
    handlers = ChatHandlers(DialogueManager(repository, ready_host(engine), MediaLoader(), TurnQueue()), None, demo=True)

    other_program = sqlite3.connect(tmp_path / "db.sqlite3", isolation_level=None)
    other_program.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(gr.Error) as busy:
            page_turn(handlers, "Hello?")
    finally:
        other_program.execute("ROLLBACK")
    assert "database is busy" in busy.value.message and "Error" not in busy.value.message

    upload = tmp_path / "upload.png"
    upload.write_bytes(png_file.read_bytes())

    def copy_to_full_disk(source, target, length=0):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(storage.blobs.shutil, "copyfileobj", copy_to_full_disk)
        with pytest.raises(gr.Error) as full:
            page_turn(handlers, "What is this?", files=[upload])
    assert "disk is full" in full.value.message and "Errno" not in full.value.message

    def planted_bug(self, source, mime):
        raise RuntimeError("planted bug")

    monkeypatch.setattr(BlobStore, "put", planted_bug)
    with pytest.raises(gr.Error) as bug:
        page_turn(handlers, "And now?", files=[upload])
    message = bug.value.message
    assert "RuntimeError" not in message and "planted bug" not in message
    assert "fault in the app" in message and "Try again" in message
    assert repository.list_conversations() == []  # nothing was half-saved by any of them


def test_a_question_left_without_an_answer_says_so_and_retry_answers_it(engine, repository):
    """As a database from before answers were saved with their questions may hold one (or a fork at a question)."""
    manager = DialogueManager(repository, ready_host(engine), MediaLoader(), TurnQueue())
    handlers = ChatHandlers(manager, None, demo=True)
    request = SimpleNamespace(session_hash="s")
    conversation = repository.create_conversation("Unanswered")
    repository.add_user_message(conversation.id, "Is anyone there?", [])

    _, chat = handlers.open_conversation(conversation.id, request)
    assert [m["role"] for m in chat] == ["user", "assistant"]  # the last message is an answer: Gradio offers ↻ on it
    assert chat[-1]["content"] == str(render.UNANSWERED) and "↻" in chat[-1]["content"]

    updates = list(handlers.regenerate(conversation.id, False, request, "", "", "", "", ""))  # the ↻ button
    question, answer = repository.get_messages(conversation.id)
    assert question.text == "Is anyone there?" and answer.status.value == "complete"
    assert updates[-1][0][-1]["content"] == answer.text + render.message_footer(answer)
    assert str(render.UNANSWERED) not in str(updates[-1][0])


def test_a_settings_field_that_is_no_number_is_named_and_nothing_is_sent(engine, repository):
    handlers = ChatHandlers(DialogueManager(repository, ready_host(engine), MediaLoader(), TurnQueue()), None, demo=True)
    request = SimpleNamespace(session_hash="s")
    with pytest.raises(gr.Error, match="Temperature: “hot” is not a number."):
        list(handlers.respond({"text": "Hello", "files": []}, None, False, request, "", "hot", "", "", ""))
    with pytest.raises(gr.Error, match="Seed: “1.5” is not a whole number."):
        list(handlers.regenerate("some-id", False, request, "", "", "", "", "1.5"))
    assert repository.list_conversations() == []


def test_a_handler_shows_the_persons_errors_and_gradio_still_sees_its_signature():
    from gradio.helpers import special_args

    from domain.errors import ConversationBusy, ConversationNotFound
    from ui.errors import shows_errors

    @shows_errors
    def plain(name: str, request: gr.Request):
        raise ConversationNotFound(f"There is no conversation {name}.")

    @shows_errors
    def streaming(name: str, request: gr.Request):
        yield name
        raise ConversationBusy("That conversation is being answered.")

    with pytest.raises(gr.Error, match="There is no conversation x."):
        plain("x", None)
    shown = []
    with pytest.raises(gr.Error, match="being answered"):
        for update in streaming("y", None):
            shown.append(update)
    assert shown == ["y"]  # a generator stays one: what it yielded first reached the page
    assert inspect.isgeneratorfunction(streaming) and not inspect.isgeneratorfunction(plain)
    assert special_args(plain, ["x"], request="the request")[0] == ["x", "the request"]


def test_speak_under_an_answer_shows_its_sound_and_a_voice_that_cannot_be_had_says_why(engine, repository, demo_speech):
    from assistant.piper_speech import PiperSpeech, Voice
    from domain.errors import SpeechUnavailable
    from tests.engine_helpers import make_manager

    handlers = ChatHandlers(make_manager(engine, repository, speech=demo_speech), None, demo=True)
    updates = page_turn(handlers, "Read this to me")
    conversation_id = updates[0][2]
    answer = repository.get_messages(conversation_id)[-1]
    request = SimpleNamespace(session_hash="s", username=None)
    shown = handlers.open_conversation(conversation_id, request)[1]
    assert f"[{render.SPEAK_LABEL}](#msg-{answer.id}-speak)" in shown[-1]["content"]

    _, chat, _ = handlers.branch_action(f"{answer.id}:speak:1", conversation_id, False, request)
    sound, text = chat[-1]["content"]
    assert sound["mime_type"] == "audio/mpeg" and sound["path"] == str(repository.get_message(answer.id).speech.path)
    assert text.startswith(answer.text) and "-speak)" not in text  # spoken once: no second 🔊

    def unreachable(code, progress):
        raise SpeechUnavailable(f"The voice {code} could not be downloaded (no network), so answers are not spoken.")

    mute = PiperSpeech({"lessac": Voice("en_US-lessac-medium", "en")}, unreachable)
    muted = ChatHandlers(make_manager(engine, repository, speech=mute), None, demo=True)
    other = page_turn(muted, "And this one")[0][2]
    unspoken = repository.get_messages(other)[-1]
    with pytest.warns(UserWarning, match=r"No sound: The voice en_US-lessac-medium could not be downloaded \(no network\)"):
        assert muted.branch_action(f"{unspoken.id}:speak:1", other, False, request) == (gr.skip(), gr.skip(), gr.skip())
    assert repository.get_message(unspoken.id).speech is None and repository.get_message(unspoken.id).text == unspoken.text
