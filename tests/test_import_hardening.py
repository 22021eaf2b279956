"""Hostile exports, imported through the page's handler and the command line as a user would.

Files an export brings pass the same check as uploads or are left out and named; what a kept file is comes
from its bytes, never from the export; deep, long and odd JSON is refused with a sentence, not a stack trace; one
member read by many messages is read (and checked) once; sizes and counts are checked before the work they cost.
"""

from __future__ import annotations

import base64
import io
import json
import re
import sqlite3
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest

from domain import limits
from domain.types import MediaKind
from tests import media_factory as make
from tests.engine_helpers import make_manager
from tests.helpers import CASES, ROOT, zipped
from ui.exports import ExportStore
from ui.transfer import TransferHandlers

HTML = b"<html><body><script>fetch('/gradio_api/user').then(r => r.text()).then(alert)</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(document.cookie)</script></svg>'


# --- exports made on the spot -----------------------------------------------------------------------------


def attachment(member: str, filename: str, kind: str = "image", mime: str = "image/png", transcript=None) -> dict:
    return {"sha256": "0" * 64, "kind": kind, "mime": mime, "filename": filename, "size_bytes": 1, "file": member, "transcript": transcript}  # fmt: skip


def message(id: int, parent: int | None, role: str, text: str, attachments=(), **extra) -> dict:
    return {"id": id, "parent_id": parent, "role": role, "text": text, "status": "complete", "error": None, "details": None,
            "created_at": "2024-05-01T10:00:00", "attachments": list(attachments), **extra}  # fmt: skip


def conversation(messages: list[dict], title: str = "Files", **extra) -> dict:
    return {"id": "c1", "title": title, "created_at": "2024-05-01T10:00:00", "updated_at": "2024-05-01T10:01:00", "pinned": False,
            "archived": False, "settings": None, "current_message_id": messages[-1]["id"] if messages else None,
            "messages": messages, **extra}  # fmt: skip


def ours(conversations: list[dict], files: dict[str, bytes] = {}) -> bytes:  # noqa: B006 - never changed
    manifest = {"format": "local-assistant", "version": 1, "exported_at": "2024-05-01T10:02:00", "conversations": conversations}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("conversations.json", json.dumps(manifest))
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def one_message_with(files: list[tuple[str, bytes, dict]], title: str = "Files") -> bytes:
    """Our format: a question holding these (member, bytes, attachment entry) files, and its answer."""
    question = message(1, None, "user", "look", [entry for _, _, entry in files])
    return ours([conversation([question, message(2, 1, "assistant", "I see.")], title)], {m: data for m, data, _ in files})


def chatgpt(mapping: dict, title: str = "From ChatGPT", **extra) -> bytes:
    return json.dumps([{"title": title, "create_time": 1700000000, "update_time": 1700000100, "mapping": mapping, **extra}]).encode()


def chatgpt_node(id: str, parent: str | None, role: str | None, parts: list, **message_extra) -> dict:
    body = None if role is None else {"id": id, "author": {"role": role}, "create_time": 1700000000.5,
                                      "content": {"content_type": "multimodal_text", "parts": parts}, **message_extra}  # fmt: skip
    return {"id": id, "message": body, "parent": parent, "children": []}


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def png_bytes(tmp_path: Path, name: str = "p.png", size=(96, 64), color=(220, 20, 20)) -> bytes:
    return make.png(tmp_path / name, size, color).read_bytes()


def jpeg_bytes(tmp_path: Path) -> bytes:
    from PIL import Image

    Image.new("RGB", (40, 30), (0, 90, 200)).save(tmp_path / "j.jpg", format="JPEG")
    return (tmp_path / "j.jpg").read_bytes()


# --- the page's handler -----------------------------------------------------------------------------------


@pytest.fixture
def page(engine, repository, tmp_path, monkeypatch, capsys):
    """Import through the page's handler: the file as Gradio leaves an upload; returns the summary it showed."""
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(uploads))
    manager = make_manager(engine, repository)
    handlers = TransferHandlers(lambda request: manager, ExportStore(tmp_path / "exports"), lambda request: None)

    def run(data: bytes, name: str = "export.zip") -> str:
        upload = uploads / "h0" / name
        upload.parent.mkdir(exist_ok=True)
        upload.write_bytes(data)
        capsys.readouterr()
        handlers.import_file(str(upload), SimpleNamespace(username=None, session_hash="s"))
        return capsys.readouterr().out  # outside a running page, gr.Info prints its message

    return run


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


# --- item 6: deep, long and odd JSON ----------------------------------------------------------------------


DEEP = b"[" * 5_000_000 + b"]" * 5_000_000


@pytest.mark.parametrize("packed", ["bare", "zipped"])
def test_a_five_million_deep_json_array_is_refused(packed, page, repository):
    data = DEEP if packed == "bare" else zipped({"conversations.json": DEEP})
    with pytest.raises(gr.Error, match="nested too deeply"):
        page(data, "conversations.json" if packed == "bare" else "export.zip")
    assert repository.list_conversations() == []


def test_a_chatgpt_chain_of_3000_messages_listed_leaf_first_comes_over_whole(page, repository):
    nodes = [chatgpt_node("root", None, None, [])]
    for i in range(3000):
        nodes.append(chatgpt_node(f"m{i}", "root" if i == 0 else f"m{i - 1}", "user" if i % 2 == 0 else "assistant", [f"turn {i}"]))
    mapping = {node["id"]: node for node in reversed(nodes)}  # the leaf first, the root last
    summary = page(chatgpt(mapping, current_node="m2999"), "conversations.json")
    assert "Imported 1 conversation(s), 3000 message(s)" in summary
    [imported] = repository.list_conversations()
    assert [m.text for m in repository.get_messages(imported.id)] == [f"turn {i}" for i in range(3000)]


def test_messages_under_a_long_chain_of_skipped_nodes_find_their_parents_at_once(page, repository):
    """Each message walked up the whole chain of skipped (empty) nodes above it: 16,000 of each took 48 s, the caps
    allowed hours. Now each node's nearest kept ancestor is known before its children are read."""
    nodes = [chatgpt_node("root", None, None, []), chatgpt_node("q", "root", "user", ["the question"])]
    depth = 20_000
    for i in range(depth):  # ChatGPT keeps hidden, empty nodes; here a long chain of them under the question
        nodes.append(chatgpt_node(f"e{i}", "q" if i == 0 else f"e{i - 1}", "assistant", []))
    for i in range(200):
        nodes.append(chatgpt_node(f"a{i}", f"e{depth - 1}", "assistant", [f"answer {i}"]))
    summary = page(chatgpt({node["id"]: node for node in nodes}, current_node="a199"), "conversations.json")
    assert "Imported 1 conversation(s), 201 message(s)" in summary
    [imported] = repository.list_conversations()
    assert [m.text for m in repository.get_messages(imported.id)] == ["the question", "answer 199"]
    assert len(repository.get_tree(imported.id)) == 201  # every answer hangs under the question


BAD_TIMES = {"1e20": 1e20, "-1e20": -1e20, "not a date": "not a date", "NaN": float("nan"), "a list": [1], "true": True}


def _times(field: str, value) -> tuple[bytes, str]:
    """An export with `value` in one date field, and the words the refusal must hold."""
    good = {"root": chatgpt_node("root", None, None, []), "q": chatgpt_node("q", "root", "user", ["hi"])}
    if field == "ChatGPT create_time":
        return chatgpt(good, create_time=value), "“create_time” of “From ChatGPT”"
    if field == "ChatGPT update_time":
        return chatgpt(good, update_time=value), "“update_time” of “From ChatGPT”"
    if field == "ChatGPT message create_time":
        good["q"]["message"]["create_time"] = value
        return chatgpt(good), "“create_time” of a message in “From ChatGPT”"
    if field == "Open WebUI timestamp":
        chat = {"title": "W", "history": {"currentId": "u", "messages": {"u": {"id": "u", "parentId": None, "role": "user", "content": "hi", "timestamp": value}}}}
        return json.dumps([{"id": "w", "chat": chat}]).encode(), "“timestamp” of a message in “W”"
    if field == "ours created_at":
        return ours([conversation([message(1, None, "user", "hi", created_at=value)], "T")]), "“created_at” of message 1 of conversation 1 (“T”)"
    return ours([conversation([message(1, None, "user", "hi")], "T", updated_at=value)]), "“updated_at” of conversation 1 (“T”)"


TIME_FIELDS = ["ChatGPT create_time", "ChatGPT update_time", "ChatGPT message create_time", "Open WebUI timestamp", "ours created_at", "ours updated_at"]


@pytest.mark.parametrize("value", list(BAD_TIMES))
@pytest.mark.parametrize("field", TIME_FIELDS)
def test_a_bad_time_is_refused_naming_its_field(field, value, page, repository):
    data, where = _times(field, BAD_TIMES[value])
    with pytest.raises(gr.Error) as refused:
        page(data, "export.zip" if field.startswith("ours") else "conversations.json")
    text = str(refused.value)
    assert where in text and "is not a date and time this app can read" in text, text
    assert "Error" not in text
    assert repository.list_conversations() == []


SHAPES = {
    "no messages": (lambda c: c.pop("messages"), "conversation 1 (“T”) lacks “messages”"),
    "messages not a list": (lambda c: c.update(messages={"a": 1}), "conversation 1 (“T”) has a “messages” that is not a list"),
    "a message that is a string": (lambda c: c["messages"].append("hi"), "message 2 of conversation 1 (“T”) is not an object"),
    "an unknown role": (lambda c: c["messages"][0].update(role="system"), "message 1 of conversation 1 (“T”) has an unknown “role” (\"system\")"),
    "a status of a list": (lambda c: c["messages"][0].update(status=[]), "has an unknown “status” (a list)"),
    "no id": (lambda c: c["messages"][0].pop("id"), "message 1 of conversation 1 (“T”) lacks “id”"),
    "an object for an id": (lambda c: c["messages"][0].update(id={}), "has a “id” that is not a message id"),
    "text of a number": (lambda c: c["messages"][0].update(text=5), "has a “text” that is not text"),
    "error of an object": (lambda c: c["messages"][0].update(error={"a": 1}), "has a “error” that is not text or null"),
    "settings of a list": (lambda c: c.update(settings=[1]), "conversation 1 (“T”) has a “settings” that is not an object or null"),
    "attachments missing": (lambda c: c["messages"][0].pop("attachments"), "lacks “attachments”"),
    "an attachment of a number": (lambda c: c["messages"][0]["attachments"].append(3), "attachment 1 of message 1 of conversation 1 (“T”) is not an object"),
    "a transcript of bad seconds": (
        lambda c: c["messages"][0]["attachments"].append({**attachment("files/p.png", "p.png"), "transcript": {"status": "done", "seconds": "x"}}),
        "the transcript of attachment 1 of message 1 of conversation 1 (“T”) has “seconds” that are not a number",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(SHAPES))
def test_a_manifest_of_the_wrong_shape_is_refused_naming_the_field_not_an_exception(name, page, repository, tmp_path):
    change, words = SHAPES[name]
    c = conversation([message(1, None, "user", "hi")], "T")
    change(c)
    with pytest.raises(gr.Error) as refused:
        page(ours([c], {"files/p.png": png_bytes(tmp_path)}))
    text = str(refused.value)
    assert "conversations.json is not in the shape this app writes" in text and words in text, text
    for internal in ("KeyError", "TypeError", "ValueError", "AttributeError", "Error:"):
        assert internal not in text
    assert repository.list_conversations() == []


def test_odd_shapes_in_chatgpt_and_open_webui_exports_count_as_absent(page, repository):
    mapping = {
        "root": chatgpt_node("root", None, None, []),
        "q": chatgpt_node("q", "root", "user", ["kept"]),
        "s": {"id": "s", "message": "a string, not a message", "parent": "q"},
        "a": {"id": "a", "message": {"author": "assistant", "content": ["x"]}, "parent": ["q"]},
        "b": {"id": "b", "message": {"author": {"role": ["assistant"]}, "content": {"content_type": ["text"], "parts": "y"}}, "parent": "q"},
    }
    summary = page(chatgpt(mapping, current_node=["q"], title=["not", "text"]), "conversations.json")
    assert "Imported 1 conversation(s), 1 message(s)" in summary
    [imported] = repository.list_conversations()
    assert imported.title == "Imported chat" and [m.text for m in repository.get_messages(imported.id)] == ["kept"]

    chat = {"title": 7, "history": {"currentId": {}, "messages": {
        "u": {"id": "u", "parentId": [], "role": "user", "content": ["not text"], "files": {"url": 1}},
        "v": {"id": "v", "parentId": "u", "role": {}, "content": "x"}}}}  # fmt: skip
    summary = page(json.dumps([{"id": "w", "chat": chat}]).encode(), "webui.json")
    assert "Imported 1 conversation(s), 1 message(s)" in summary and "a non-text message" in summary


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


def test_a_manifest_over_its_limit_is_refused_on_its_header_before_it_is_read(page, repository, monkeypatch):
    monkeypatch.setattr(limits, "MAX_JSON_BYTES", 2**20)
    data = zipped({"conversations.json": b"[" + b" " * (16 * 2**20) + b"]"})  # 16 MB, in a zip of some kB
    assert len(data) < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(gr.Error, match=r"conversations.json is .*1 MB"):
            page(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, f"{peak / 2**20:.1f} MB"


@pytest.mark.parametrize("source", ["ours", "ChatGPT"])
def test_a_small_zip_cannot_make_100000_conversations(source, page, repository):
    if source == "ours":
        data = ours([conversation([], f"c{i}") for i in range(100_000)])
    else:
        data = zipped({"conversations.json": json.dumps([{"title": "x", "mapping": {}}] * 100_000).encode()})
    assert len(data) < 400_000
    with pytest.raises(gr.Error, match=r"holds 100,000 conversations; one import takes at most [\d,]+\."):
        page(data)
    assert repository.list_conversations() == []
    assert limits.MAX_IMPORT_CONVERSATIONS < 100_000


def test_the_message_count_is_capped_before_anything_is_built(page, repository):
    mapping = json.dumps({"title": "many", "mapping": {f"m{i}": {} for i in range(250_001)}}).encode()
    with pytest.raises(gr.Error, match=r"holds 250,001 messages; one import takes at most [\d,]+\."):
        page(zipped({"conversations.json": mapping}))
    assert repository.list_conversations() == []
    assert limits.MAX_IMPORT_MESSAGES < 250_001
