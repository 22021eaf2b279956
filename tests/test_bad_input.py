"""The bad-input corpus: hostile and odd messages and files, through the dialogue manager and the page's handler.

Each case is made on the spot. A refused case must name what is wrong, save nothing, keep the app
serving, and leave no upload behind; an accepted one must be answered and shown.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest

from domain import limits
from assistant.dialogue import DialogueManager, ReplyFinished
from assistant.media import MediaLoader
from assistant.model_host import ModelHost
from assistant.turn_queue import TurnQueue
from domain.errors import InvalidInput
from domain.types import MediaKind, Status
from tests import media_factory as make
from ui.app import ChatHandlers

Uploads = list[tuple[Path, str]]


@dataclass(frozen=True)
class Case:
    text: str | Callable[[], str]
    files: Callable[[Path], Uploads]  # builds the files in the given folder: (path, name shown to the user)
    refused: str | None = None  # a regex the refusal must match; None: accepted
    kinds: tuple[MediaKind, ...] = ()
    saved_text: str | None = None  # what the message must be stored as, when not the text itself


def one(name: str, build: Callable[[Path], Path]) -> Callable[[Path], Uploads]:
    return lambda folder: [(build(folder / name), name)]


def none(folder: Path) -> Uploads:
    return []


def nine_images(folder: Path) -> Uploads:
    return [(make.png(folder / f"p{i}.png"), f"p{i}.png") for i in range(9)]


def written(data: bytes) -> Callable[[Path], Path]:
    def build(path: Path) -> Path:
        path.write_bytes(data)
        return path

    return build


def sparse(size: int) -> Callable[[Path], Path]:
    def build(path: Path) -> Path:
        with open(path, "wb") as f:
            f.truncate(size)
        return path

    return build


def vanished(folder: Path) -> Uploads:
    return [(folder / "gone.png", "gone.png")]


def truncated_png(path: Path) -> Path:
    return make.truncated(path, make.noisy_image(path.with_suffix(".full.png")))


def truncated_jpeg(path: Path) -> Path:
    return make.truncated(path, make.noisy_image(path.with_suffix(".full.jpg"), fmt="JPEG"))


def truncated_flac(path: Path) -> Path:
    full = make.write_tone(path.with_suffix(".full.flac"), 2.0, 22050, "flac", "flac", "mono")
    return make.truncated(path, full, keep=0.7)  # the header and some frames parse; decoding fails later


def long_wav(path: Path) -> Path:
    return make.write_tone(path, limits.MAX_AUDIO_SECONDS + 2, rate=8000)


CASES: dict[str, Case] = {
    # refused, naming the problem
    "truncated-png": Case("what is this?", one("cut.png", truncated_png), r"“cut.png” is damaged or incomplete"),
    "truncated-jpeg": Case("what is this?", one("cut.jpg", truncated_jpeg), r"“cut.jpg” is damaged or incomplete"),
    "aspect-402x2": Case("a line", one("line.png", lambda p: make.png(p, (402, 2))), r"“line.png” is 402×2 pixels.*200 times"),
    "decompression-bomb": Case("big", one("bomb.png", make.bomb_png), r"“bomb.png” has too many pixels"),
    "over-50-megapixels": Case("big", one("huge.png", lambda p: make.bomb_png(p, (8000, 7500))), r"“huge.png” has 60 megapixels; the limit is 50"),
    "truncated-flac": Case("listen", one("cut.flac", truncated_flac), r"“cut.flac” is damaged"),
    "zero-bytes": Case("empty?", one("empty.wav", written(b"")), r"“empty.wav” is empty"),
    "text-named-png": Case("look", one("notes.png", written(b"just some notes\n" * 20)), r"“notes.png” is not an image or audio file"),
    "pdf-named-jpg": Case("look", one("doc.jpg", written(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n")), r"“doc.jpg” is not an image or audio"),
    "random-bytes-wav": Case("listen", one("noise.wav", written(bytes(range(256)) * 64)), r"“noise.wav” is not an image or audio"),
    "video-as-audio": Case("listen", one("clip.ogg", make.video_with_sound), r"“clip.ogg” is a video"),
    "audio-over-5-minutes": Case("listen", one("long.wav", long_wav), r"“long.wav” is longer than 5 minutes"),
    "silent-recording": Case("hear anything?", one("quiet.wav", make.silence_wav), r"“quiet.wav” is silent: nothing was heard"),
    "recording-under-half-a-second": Case("hm", one("click.wav", lambda p: make.write_tone(p, 0.3)), r"“click.wav” is only 0.3 seconds long"),
    "file-over-25MB": Case("big", one("big.wav", sparse(limits.MAX_FILE_BYTES + 1)), r"“big.wav” is 25.0 MB; the limit is 25 MB"),
    "nine-files": Case("many", nine_images, r"9 files are attached; a message can carry at most 8"),
    "file-vanished": Case("here", vanished, r"“gone.png” did not arrive"),
    "one-megabyte-message": Case(lambda: "x" * 1_000_000, none, r"1,000,000 characters long; the limit is 20,000"),
    "lone-surrogate": Case("broken \ud83d emoji", none, r"not valid text"),
    "nothing": Case("", none, r"Type a message"),
    "only-whitespace-and-controls": Case(" \n\t\x00\x07 ", none, r"Type a message"),
    # accepted, and answered
    "animated-gif": Case("which frame?", one("anim.gif", make.animated_gif), kinds=(MediaKind.IMAGE,)),
    "cmyk-jpeg": Case("print colours", one("cmyk.jpg", make.cmyk_jpeg), kinds=(MediaKind.IMAGE,)),
    "16-bit-png": Case("deep", one("deep.png", make.sixteen_bit_png), kinds=(MediaKind.IMAGE,)),
    "one-pixel": Case("tiny", one("dot.png", lambda p: make.png(p, (1, 1))), kinds=(MediaKind.IMAGE,)),
    "aspect-exactly-200": Case("a line", one("line.png", lambda p: make.png(p, (400, 2))), kinds=(MediaKind.IMAGE,)),
    "audio-over-30-seconds": Case("listen", one("long.wav", lambda p: make.write_tone(p, 45, rate=8000)), kinds=(MediaKind.AUDIO,)),
    "m4a-with-cover-art": Case("song", one("song.m4a", make.m4a_with_cover_art), kinds=(MediaKind.AUDIO,)),
    "control-characters": Case("red\x1b[31m alert\x00\x07 now", none, saved_text="red[31m alert now"),
    "right-to-left": Case("مرحبا \u202eשלום\u202c hello", none),
    "html-and-script-text": Case("<script>alert(1)</script> <img src=x onerror=alert(2)>", none),
}
assert len(CASES) >= 25


def case_text(case: Case) -> str:
    return case.text() if callable(case.text) else case.text


def snapshot(tmp_path: Path) -> tuple:
    """Everything stored: row counts of every table and the blob files."""
    db = sqlite3.connect(tmp_path / "db.sqlite3")
    try:
        counts = tuple(
            db.execute(f"select count(*) from {table}").fetchone()[0]
            for table in ("conversation", "message", "attachment", "message_attachment")
        )
    finally:
        db.close()
    blobs = sorted(str(p) for p in (tmp_path / "files").rglob("*") if p.is_file())
    return counts, blobs


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
