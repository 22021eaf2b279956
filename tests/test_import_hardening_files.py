"""Files in hostile exports, imported through the page and the command line: checked as uploads are, read once."""

from __future__ import annotations

import base64
import json
import re
import sqlite3
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from domain import limits
from domain.types import MediaKind
from tests import media_factory as make
from tests.export_factory import attachment, chatgpt, chatgpt_node, conversation, message, ours, png_bytes
from tests.helpers import CASES, ROOT


HTML = b"<html><body><script>fetch('/gradio_api/user').then(r => r.text()).then(alert)</script></body></html>"


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(document.cookie)</script></svg>'


def one_message_with(files: list[tuple[str, bytes, dict]], title: str = "Files") -> bytes:
    """Our format: a question holding these (member, bytes, attachment entry) files, and its answer."""
    question = message(1, None, "user", "look", [entry for _, _, entry in files])
    return ours([conversation([question, message(2, 1, "assistant", "I see.")], title)], {m: data for m, data, _ in files})


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def jpeg_bytes(tmp_path: Path) -> bytes:
    from PIL import Image

    Image.new("RGB", (40, 30), (0, 90, 200)).save(tmp_path / "j.jpg", format="JPEG")
    return (tmp_path / "j.jpg").read_bytes()


def stored_files(repository) -> list[tuple[str, MediaKind, str]]:
    """Every attachment of every message (all branches): (file name, kind, mime)."""
    return [(a.filename, a.kind, a.mime) for c in repository.export_conversations() for m in c.messages for a in m.attachments]


def database_mimes(tmp_path: Path) -> set[str]:
    db = sqlite3.connect(tmp_path / "db.sqlite3")
    try:
        return {row[0] for row in db.execute("select mime from attachment")}
    finally:
        db.close()


# --- item 1: imported files are checked as uploads are ----------------------------------------------------


def test_our_archive_cannot_smuggle_html_or_svg_and_a_file_is_what_its_bytes_are(page, repository, tmp_path):
    data = one_message_with([
        ("files/a.html", HTML, attachment("files/a.html", "a.html", "image", "text/html")),
        ("files/b.svg", SVG, attachment("files/b.svg", "b.svg", "image", "image/svg+xml")),
        ("files/c.png", png_bytes(tmp_path), attachment("files/c.png", "c.png", "audio", "text/html")),
        ("files/d.wav", make.write_tone(tmp_path / "d.wav", 1.0).read_bytes(), attachment("files/d.wav", "d.png", "image", "image/png")),
    ])  # fmt: skip
    summary = page(data)
    assert stored_files(repository) == [("c.png", MediaKind.IMAGE, "image/png"), ("d.png", MediaKind.AUDIO, "audio/wav")]
    assert database_mimes(tmp_path) == {"image/png", "audio/wav"}
    assert "Imported 1 conversation(s), 2 message(s), 2 file(s)." in summary
    assert "Not imported: “a.html” is not an image or audio file this app can read (in “Files”)" in summary
    assert "“b.svg” is not an image or audio file this app can read (in “Files”)" in summary


def test_chatgpt_and_open_webui_data_urls_are_what_their_bytes_are(page, repository, tmp_path):
    parts = [
        data_url("image/svg+xml", SVG),
        data_url("text/html", HTML),
        data_url("image/png", jpeg_bytes(tmp_path)),
        data_url("audio/wav", png_bytes(tmp_path)),
        "what are these?",
    ]
    mapping = {"root": chatgpt_node("root", None, None, []), "q": chatgpt_node("q", "root", "user", parts)}
    summary = page(chatgpt(mapping, current_node="q"), "conversations.json")
    assert stored_files(repository) == [("image-3.jpg", MediaKind.IMAGE, "image/jpeg"), ("image-4.png", MediaKind.IMAGE, "image/png")]
    assert "“image-1” is not an image or audio file this app can read (in “From ChatGPT”)" in summary
    assert "“image-2” is not an image or audio file" in summary
    assert [m.text for c in repository.export_conversations() for m in c.messages] == ["what are these?"]

    webui = [{"id": "w", "chat": {"title": "From Open WebUI", "history": {"currentId": "u", "messages": {
        "u": {"id": "u", "parentId": None, "role": "user", "content": "and these?", "timestamp": 1710000000,
              "files": [{"type": "image", "name": "logo.svg", "url": data_url("image/png", SVG)},
                        {"type": "image", "name": "photo", "url": data_url("image/svg+xml", jpeg_bytes(tmp_path))}]}}}}}]  # fmt: skip
    summary = page(json.dumps(webui).encode(), "webui.json")
    assert "“logo.svg” is not an image or audio file this app can read (in “From Open WebUI”)" in summary
    assert stored_files(repository)[-1] == ("photo.jpg", MediaKind.IMAGE, "image/jpeg")
    assert database_mimes(tmp_path) == {"image/png", "image/jpeg"}


FILE_CASES = {name: case for name, case in CASES.items() if case.files.__name__ != "none" and name not in ("nine-files", "file-vanished")}


@pytest.mark.parametrize("name", list(FILE_CASES))
def test_each_file_of_the_bad_input_corpus_is_checked_on_import_as_on_upload(name, page, repository, tmp_path):
    """The uploads' corpus, in an export: what an upload refuses is left out and named; what it accepts comes over."""
    case = FILE_CASES[name]
    folder = tmp_path / "in"
    folder.mkdir()
    files = [(f"files/{i}-{Path(path).name}", Path(path).read_bytes(), attachment(f"files/{i}-{Path(path).name}", shown))
             for i, (path, shown) in enumerate(case.files(folder))]  # fmt: skip
    summary = page(one_message_with(files))
    if case.refused:
        assert stored_files(repository) == []
        assert "Not imported: " in summary
        assert re.search(case.refused, summary), summary
    else:
        assert [kind for _, kind, _ in stored_files(repository)] == list(case.kinds)
        assert "Not imported" not in summary


def test_a_message_keeps_at_most_the_files_an_upload_may_carry(page, repository, tmp_path):
    files = []
    for i in range(limits.MAX_FILES_PER_MESSAGE + 1):
        name = f"files/p{i}.png"
        files.append((name, png_bytes(tmp_path, f"p{i}.png", color=(i * 20, 0, 0)), attachment(name, f"p{i}.png")))
    summary = page(one_message_with(files))
    assert [f[0] for f in stored_files(repository)] == [f"p{i}.png" for i in range(limits.MAX_FILES_PER_MESSAGE)]
    assert f"“p8.png”, past the {limits.MAX_FILES_PER_MESSAGE} files a message can carry" in summary


def test_a_transcript_comes_over_only_with_audio(page, repository, tmp_path):
    transcript = {"status": "done", "text": "hello", "language": "en", "seconds": 1.0, "model": "w", "error": None}
    data = one_message_with([
        ("files/s.wav", make.write_tone(tmp_path / "s.wav", 1.0).read_bytes(), attachment("files/s.wav", "s.wav", "audio", "audio/wav", transcript)),
        ("files/p.png", png_bytes(tmp_path), attachment("files/p.png", "p.png", "audio", "audio/wav", transcript)),
    ])  # fmt: skip
    page(data)
    [question] = [m for c in repository.export_conversations() for m in c.messages if m.attachments]
    assert [(a.kind, a.transcript.text if a.transcript else None) for a in question.attachments] == [
        (MediaKind.AUDIO, "hello"),
        (MediaKind.IMAGE, None),
    ]


def test_the_command_line_checks_imported_files_too(tmp_path):
    data = one_message_with([
        ("files/a.html", HTML, attachment("files/a.html", "a.html", "image", "text/html")),
        ("files/c.png", png_bytes(tmp_path), attachment("files/c.png", "c.png", "image", "text/html")),
    ])  # fmt: skip
    (tmp_path / "evil.zip").write_bytes(data)
    result = subprocess.run(
        [sys.executable, "run.py", "import", str(tmp_path / "evil.zip"), "--data-dir", str(tmp_path / "data")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Imported 1 conversation(s), 2 message(s), 1 file(s). Not imported: “a.html” is not an image or audio file" in result.stdout
    db = sqlite3.connect(tmp_path / "data" / "conversations.sqlite3")
    try:
        assert [row for row in db.execute("select kind, mime from attachment")] == [("image", "image/png")]
    finally:
        db.close()
    assert [p.suffix for p in (tmp_path / "data" / "files").rglob("*") if p.is_file()] == [".png"]


# --- item 7: the cost of an import ------------------------------------------------------------------------


def one_member_in_many_messages(tmp_path: Path, references: int = 40) -> bytes:
    picture = make.noisy_image(tmp_path / "noise.png", (820, 820)).read_bytes()  # ~2 MB: random pixels do not compress
    assert len(picture) > 1.9e6
    messages, parent = [], None
    for i in range(references):
        messages.append(message(2 * i + 1, parent, "user", f"again {i}", [attachment("files/noise.png", f"noise-{i}.png")]))
        messages.append(message(2 * i + 2, 2 * i + 1, "assistant", "noise"))
        parent = 2 * i + 2
    return ours([conversation(messages, "Noise")], {"files/noise.png": picture})


def test_one_member_held_by_many_messages_is_read_once(page, repository, tmp_path):
    data = one_member_in_many_messages(tmp_path)
    tracemalloc.start()
    try:
        summary = page(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "Imported 1 conversation(s), 80 message(s), 1 file(s)." in summary
    assert len(stored_files(repository)) == 40
    # Today's 40 copies of the bytes were 80 MB; one read, streamed to disk, is a small part of one.
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MB"


def test_one_file_held_by_many_messages_is_checked_once(page, tmp_path, monkeypatch):
    import assistant.imports

    checks = []
    real = assistant.imports.validate_file
    monkeypatch.setattr(assistant.imports, "validate_file", lambda *args: checks.append(args[1]) or real(*args))
    page(one_member_in_many_messages(tmp_path))
    assert checks == ["noise-0.png"]
