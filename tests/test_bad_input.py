"""The bad-input corpus: hostile and odd messages and files, through the dialogue manager and the page's handler.

Each case is made on the spot. A refused case must name what is wrong, save nothing, keep the app
serving, and leave no upload behind; an accepted one must be answered and shown.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest

from assistant.dialogue import DialogueManager, ReplyFinished
from assistant.media import MediaLoader
from assistant.model_host import ModelHost
from assistant.turn_queue import TurnQueue
from domain.errors import InvalidInput
from domain.types import Status
from tests import media_factory as make
from tests.helpers import CASES, Uploads, case_text, snapshot
from ui.app import ChatHandlers


@pytest.fixture
def manager(engine, repository):
    host = ModelHost(lambda progress: engine).start()
    assert host.wait(10)
    return DialogueManager(repository, host, MediaLoader(), TurnQueue())


def answer(manager: DialogueManager, conversation_id, text: str, uploads: Uploads):
    return list(manager.send(conversation_id, text, uploads, threading.Event()))


@pytest.mark.parametrize("name", list(CASES))
def test_dialogue_manager(name, manager, repository, tmp_path):
    case = CASES[name]
    folder = tmp_path / "in"
    folder.mkdir()
    # An existing conversation, so "nothing saved before changes" has something to lose.
    conversation_id = answer(manager, None, "hello", [])[0].conversation.id
    before = snapshot(tmp_path)
    text, uploads = case_text(case), case.files(folder)

    if case.refused:
        with pytest.raises(InvalidInput, match=case.refused):
            answer(manager, conversation_id, text, uploads)
        assert snapshot(tmp_path) == before
        with pytest.raises(InvalidInput, match=case.refused):
            answer(manager, None, text, uploads)  # nor does a new conversation appear
        assert snapshot(tmp_path) == before
    else:
        events = answer(manager, conversation_id, text, uploads)
        final = events[-1]
        assert isinstance(final, ReplyFinished) and final.message.status is Status.COMPLETE, final
        user = repository.get_messages(conversation_id)[-2]
        assert [a.kind for a in user.attachments] == list(case.kinds)
        assert user.text == (case.saved_text if case.saved_text is not None else text)

    # The app keeps serving: the same conversation takes a plain follow-up.
    after = answer(manager, conversation_id, "still there?", [])
    assert after[-1].message.status is Status.COMPLETE


def file_names_and_paths_case(tmp_path: Path) -> Uploads:
    return [(make.png(tmp_path / "a.png"), "../../etc/passwd.png"), (make.png(tmp_path / "b.png", color=(0, 0, 255)), "<img src=x onerror=alert(1)>.png")]


def test_file_names_with_paths_and_html_are_stored_as_plain_names(manager, repository, tmp_path):
    events = answer(manager, None, "two files", file_names_and_paths_case(tmp_path))
    user = repository.get_messages(events[0].conversation.id)[0]
    assert [a.filename for a in user.attachments] == ["passwd.png", "<img src=x onerror=alert(1)>.png"]
    files_root = (tmp_path / "files").resolve()
    assert all(a.path.resolve().is_relative_to(files_root) for a in user.attachments)
    assert events[-1].message.status is Status.COMPLETE


# --- the page's handler: the same corpus, as uploads in Gradio's upload folder --------------------------


@pytest.fixture
def upload_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "uploads"
    folder.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))
    return folder


def as_uploads(uploads: Uploads, upload_dir: Path) -> list[str]:
    """Where Gradio puts an upload: a folder per file, named by its hash, holding the file under its name."""
    paths = []
    for i, (path, name) in enumerate(uploads):
        target = upload_dir / f"h{i}" / Path(name).name
        target.parent.mkdir()
        if path.exists():
            path.rename(target)
        paths.append(str(target))
    return paths


def respond(handlers: ChatHandlers, text: str, files: list[str], conversation_id=None) -> list[tuple]:
    request = SimpleNamespace(session_hash="test-session")
    return list(handlers.respond({"text": text, "files": files}, conversation_id, False, request, "", None, None, None, None))


@pytest.mark.parametrize("name", list(CASES))
def test_page_handler(name, manager, repository, tmp_path, upload_dir):
    case = CASES[name]
    handlers = ChatHandlers(manager, manager.host, demo=True)
    folder = tmp_path / "in"
    folder.mkdir()
    before = snapshot(tmp_path) if (tmp_path / "db.sqlite3").exists() else None
    text, files = case_text(case), as_uploads(case.files(folder), upload_dir)

    if case.refused:
        updates = []
        with pytest.raises(gr.Error, match=case.refused):
            for update in handlers.respond(
                {"text": text, "files": files}, None, False, SimpleNamespace(session_hash="s"), "", None, None, None, None
            ):
                updates.append(update)
        assert repository.list_conversations() == []
        if before is not None:
            assert snapshot(tmp_path) == before
        # The text stays in the composer; a file at fault leaves it and the disk; blameless files stay.
        left = [p for p in upload_dir.rglob("*") if p.is_file()]
        if updates:
            composer = updates[-1][1]
            assert composer["text"] == text
            assert sorted(composer["files"]) == sorted(str(p) for p in left)
        if name == "nine-files":
            assert len(left) == 9  # nobody's fault but the count: the user removes one and sends again
        else:
            assert left == []
    else:
        updates = respond(handlers, text, files)
        chat = updates[-1][0]
        assert chat[-1]["role"] == "assistant" and chat[-1]["content"].strip()
        assert "⚠️" not in chat[-1]["content"]
        assert [p for p in upload_dir.rglob("*") if p.is_file()] == []  # stored as blobs, uploads deleted

    # Still serving.
    final = respond(handlers, "still there?", [])[-1][0]
    assert final[-1]["role"] == "assistant" and "⚠️" not in final[-1]["content"]
