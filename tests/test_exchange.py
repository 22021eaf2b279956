"""Export and import: our lossless zip round trip, ChatGPT and Open WebUI exports, and every kind of bad file."""

from __future__ import annotations

import base64
import io
import json
import os
import zipfile

import pytest

from domain import limits
from domain.errors import InvalidInput
from domain.types import MediaKind
from assistant.imports import import_archive
from storage.exchange import export_zip
from tests.media_factory import png
from tests.helpers import repository_at as make_repository
from tests.helpers import rich_history, snapshot, zipped


def exported(repository) -> dict:
    out = io.BytesIO()
    export_zip(repository.export_conversations(), out)
    with zipfile.ZipFile(out) as archive:
        return json.loads(archive.read("conversations.json")), sorted(archive.namelist()), out.getvalue()


def without_ids(document: dict) -> list[dict]:
    """The manifest with export time and ids replaced by positions, so two exports can be compared."""
    conversations = []
    for c in document["conversations"]:
        index = {m["id"]: i for i, m in enumerate(c["messages"])}
        messages = [
            {**m, "id": index[m["id"]], "parent_id": None if m["parent_id"] is None else index[m["parent_id"]]}
            for m in c["messages"]
        ]
        conversations.append({**c, "id": None, "current_message_id": index.get(c["current_message_id"]), "messages": messages})
    return conversations


def import_into(repository, data: bytes):
    """Import an export held in memory the way the page and the command line do: (stored conversations, summary)."""
    stored = []
    summary = import_archive(io.BytesIO(data), lambda conversations: stored.extend(repository.import_conversations(conversations)))
    return stored, summary


def test_export_then_import_gives_back_the_same_conversations(tmp_path):
    source = make_repository(tmp_path / "a")
    rich_history(source, tmp_path)
    first, names, data = exported(source)
    assert first["format"] == "local-assistant" and len(first["conversations"]) == 2
    assert sum(n.startswith("files/") for n in names) == 2 and sum(n.startswith("markdown/") for n in names) == 2

    target = make_repository(tmp_path / "b")
    import_into(target, data)
    second, names_again, _ = exported(target)
    assert without_ids(second) == without_ids(first)  # every field: tree, texts, statuses, settings, details, times
    assert {c["id"] for c in second["conversations"]}.isdisjoint({c["id"] for c in first["conversations"]})
    assert [n for n in names_again if n.startswith("files/")] == [n for n in names if n.startswith("files/")]  # same hashes
    pictures = next(c for c in target.list_conversations() if c.title == "Pictures")
    assert pictures.pinned and [m.text for m in target.get_messages(pictures.id)] == ["Describe it", "Half an ans"]
    assert target.search("这是什么")  # imported text is searchable


def test_an_import_gives_back_the_same_conversations_on_each_database(repository_on_each_database, tmp_path):
    source = make_repository(tmp_path / "a")
    rich_history(source, tmp_path)
    first, _, data = exported(source)
    import_into(repository_on_each_database, data)
    second, _, _ = exported(repository_on_each_database)
    assert without_ids(second) == without_ids(first)


def test_a_parent_listed_after_its_child_makes_a_root_never_a_cycle(tmp_path):
    def message(id, parent, role):
        return {"id": id, "parent_id": parent, "role": role, "text": f"m{id}", "status": "complete", "error": None,
                "details": None, "created_at": None, "attachments": []}  # fmt: skip

    conversation = {"id": "c", "title": "Loop", "created_at": None, "updated_at": None, "pinned": False, "archived": False,
                    "settings": None, "current_message_id": 2, "messages": [message(1, 2, "user"), message(2, 1, "assistant")]}  # fmt: skip
    manifest = {"format": "local-assistant", "version": 1, "conversations": [conversation]}
    repository = make_repository(tmp_path / "r")
    [imported], _ = import_into(repository, zipped({"conversations.json": json.dumps(manifest).encode()}))
    assert [(m.text, m.parent_id is None) for m in repository.get_messages(imported.id)] == [("m1", True), ("m2", False)]


def test_the_markdown_shows_the_active_path_with_its_images(tmp_path):
    repository = make_repository(tmp_path / "a")
    rich_history(repository, tmp_path)
    _, names, data = exported(repository)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        markdown = archive.read(next(n for n in names if n.endswith("Pictures.md"))).decode()
    assert markdown.startswith("# Pictures")
    assert "![p.png](../files/" in markdown and "**You:**\n" in markdown
    assert "Describe it" in markdown and "Half an ans" in markdown and "A red square." not in markdown


def data_url(tmp_path) -> str:
    return "data:image/png;base64," + base64.b64encode(png(tmp_path / "embedded.png").read_bytes()).decode()


def chatgpt_export(tmp_path) -> list:
    """ChatGPT's documented shape: a root node, a question, two answers (a regeneration), a tool call."""

    def node(id, parent, children, role=None, parts=None, content_type="text"):
        message = None if role is None else {
            "id": id, "author": {"role": role}, "create_time": 1700000000.5,
            "content": {"content_type": content_type, "parts": parts or []},
        }  # fmt: skip
        return {"id": id, "message": message, "parent": parent, "children": children}

    mapping = {
        "root": node("root", None, ["q"]),
        "q": node("q", "root", ["a1", "a2"], "user", ["Look at this", {"content_type": "image_asset_pointer", "asset_pointer": "file-service://x"}], "multimodal_text"),
        "a1": node("a1", "q", [], "assistant", ["First answer"]),
        "a2": node("a2", "q", ["t"], "assistant", ["Second answer"]),
        "t": node("t", "a2", ["img"], "tool", ["python output"]),
        "img": node("img", "t", [], "user", [data_url(tmp_path), "and this picture"], "multimodal_text"),
    }
    return [{"title": "From ChatGPT", "create_time": 1700000000, "update_time": 1700000100, "mapping": mapping, "current_node": "img"}]


def test_chatgpt_export_keeps_branches_and_embedded_images(tmp_path):
    repository = make_repository(tmp_path / "r")
    raw = json.dumps(chatgpt_export(tmp_path)).encode()
    for data in (raw, zipped({"conversations.json": raw})):
        [conversation], summary = import_into(repository, data)
        path = repository.get_messages(conversation.id)
        assert [m.text for m in path] == ["Look at this", "Second answer", "and this picture"]
        assert [a.kind for a in path[2].attachments] == [MediaKind.IMAGE]
        assert (path[1].version, path[1].versions) == (2, 2)  # the other answer is a version of the same turn
        assert any("image_asset_pointer" in s for s in map(str, summary.skipped))
        assert any("tool message" in s for s in map(str, summary.skipped))
        assert "Not imported:" in summary.sentence()
        assert path[0].created_at.year == 2023


def test_open_webui_export_keeps_branches_and_embedded_images(tmp_path):
    repository = make_repository(tmp_path / "r")
    messages = {
        "u1": {"id": "u1", "parentId": None, "childrenIds": ["b1", "b2"], "role": "user", "content": "Hi there", "timestamp": 1710000000,
               "files": [{"type": "image", "url": data_url(tmp_path)}]},
        "b1": {"id": "b1", "parentId": "u1", "childrenIds": [], "role": "assistant", "content": "Hello!", "timestamp": 1710000001},
        "b2": {"id": "b2", "parentId": "u1", "childrenIds": ["u2"], "role": "assistant", "content": "Hi!", "timestamp": 1710000002},
        "u2": {"id": "u2", "parentId": "b2", "childrenIds": [], "role": "user", "content": "How are you?", "timestamp": 1710000003,
               "files": [{"type": "file", "url": "/api/v1/files/abc"}]},
    }  # fmt: skip
    export = [{"id": "c1", "title": "From Open WebUI", "chat": {"title": "From Open WebUI", "history": {"messages": messages, "currentId": "b1"}},
               "created_at": 1710000000, "updated_at": 1710000003, "pinned": True}]  # fmt: skip
    [conversation], summary = import_into(repository, json.dumps(export).encode())
    assert conversation.pinned and conversation.title == "From Open WebUI"
    path = repository.get_messages(conversation.id)
    assert [m.text for m in path] == ["Hi there", "Hello!"] and [a.kind for a in path[0].attachments] == [MediaKind.IMAGE]
    repository.switch_version(path[1].id, +1)
    assert [m.text for m in repository.get_messages(conversation.id)] == ["Hi there", "Hi!", "How are you?"]
    assert list(map(str, summary.skipped)) == ["a file in “From Open WebUI”"]


def our_export_missing_a_file(tmp_path) -> bytes:
    repository = make_repository(tmp_path / "src")
    rich_history(repository, tmp_path)
    _, names, data = exported(repository)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = {n: archive.read(n) for n in names if not n.endswith(".wav")}
    return zipped(members)


BAD_FILES = {
    "not a zip": (lambda tmp: b"\x00\x01 binary noise" * 50, "not an export this app can read"),
    "zip of other things": (lambda tmp: zipped({"photo.jpg": b"x"}), "has no conversations.json"),
    "dot-dot member": (lambda tmp: zipped({"../../evil.txt": b"x", "conversations.json": b"[]"}), "unsafe name"),
    "absolute member": (lambda tmp: zipped({"/etc/evil": b"x", "conversations.json": b"[]"}), "unsafe name"),
    "broken json": (lambda tmp: zipped({"conversations.json": b"{not json"}), "not valid JSON"),
    "json of another shape": (lambda tmp: zipped({"conversations.json": b'[{"hello": 1}]'}), "shape this app does not know"),
    "our format, wrong version": (lambda tmp: zipped({"conversations.json": b'{"format": "local-assistant", "version": 99}'}), "format version 99"),
    "our format, bad shape": (lambda tmp: zipped({"conversations.json": b'{"format": "local-assistant", "version": 1, "conversations": [{}]}'}), "not in the shape"),
    "missing attachment": (our_export_missing_a_file, "lacks files/"),
    "zip bomb": (lambda tmp: zipped({"conversations.json": b"[]", "big.bin": b"\0" * (3 << 20)}), "zip bomb"),
    # issue 15: deep, long and odd JSON, dates that are none, and small files that would cost much
    "5-million-deep JSON array": (lambda tmp: b"[" * 5_000_000 + b"]" * 5_000_000, "nested too deeply"),
    "5-million-deep JSON array, zipped": (lambda tmp: zipped({"conversations.json": b"[" * 5_000_000 + b"]" * 5_000_000}), "nested too deeply"),
    "a 5,000-digit number": (lambda tmp: b'[{"title": "x", "mapping": {}, "create_time": ' + b"9" * 5000 + b"}]", "a number too long"),
    "ChatGPT create_time 1e20": (lambda tmp: chatgpt_with(create_time=1e20), r"“create_time” of “T” \(1e\+20\) is not a date"),
    "ChatGPT create_time -1e20": (lambda tmp: chatgpt_with(create_time=-1e20), r"“create_time” of “T” \(-1e\+20\) is not a date"),
    "ChatGPT create_time not a date": (lambda tmp: chatgpt_with(create_time="not a date"), r"“create_time” of “T” \(\"not a date\"\) is not a date"),
    "ChatGPT create_time NaN": (lambda tmp: chatgpt_with(create_time=float("nan")), r"“create_time” of “T” \(NaN\) is not a date"),
    "ChatGPT create_time a list": (lambda tmp: chatgpt_with(create_time=[2024]), r"“create_time” of “T” \(a list\) is not a date"),
    "ChatGPT update_time infinite": (lambda tmp: chatgpt_with(update_time=float("inf")), r"“update_time” of “T” \(Infinity\) is not a date"),
    "Open WebUI timestamp 1e20": (lambda tmp: webui_with(timestamp=1e20), r"“timestamp” of a message in “W” \(1e\+20\) is not a date"),
    "our created_at not a date": (lambda tmp: ours_with(created_at="yesterday"), r"“created_at” of conversation 1 \(“T”\) \(\"yesterday\"\) is not a date"),
    "our shape, no messages": (lambda tmp: ours_with(messages=None), r"conversation 1 \(“T”\) has a “messages” that is not a list"),
    "our shape, a role unknown": (lambda tmp: ours_with(messages=[{"id": 1, "role": "root"}]), r"message 1 of conversation 1 \(“T”\) lacks “attachments”"),
    "100,000 empty conversations": (lambda tmp: zipped({"conversations.json": json.dumps([{"title": "x", "mapping": {}}] * 100_000).encode()}), r"holds 100,000 conversations; one import takes at most 10,000"),
    "250,001 messages": (lambda tmp: zipped({"conversations.json": json.dumps([{"title": "x", "mapping": {f"m{i}": {} for i in range(250_001)}}]).encode()}), r"holds 250,001 messages; one import takes at most 250,000"),
    "manifest over 1 MB (on its header)": (lambda tmp: zipped({"conversations.json": b"[" + b" " * (3 << 19) + b"]"}), r"conversations.json is 2 MB; an export's conversations.json may be at most 1 MB"),
    "damaged member": (lambda tmp: damaged_zip(), r"The zip is damaged: “conversations.json” in it cannot be read"),
    "password-protected member": (lambda tmp: encrypted_zip(), r"password-protected"),
    # found by a review's byte-flipping: each was a traceback
    "a member with no name": (lambda tmp: nameless_member_zip(), r"The zip is damaged \(a file in it has no name\)"),
    "an impossible zip version": (lambda tmp: zip_needing_version(200), r"The zip is damaged and cannot be read"),
}  # fmt: skip


def nameless_member_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(zipfile.ZipInfo(""), b"x")
        archive.writestr("conversations.json", b"[]")
    return out.getvalue()


def zip_needing_version(version: int) -> bytes:
    """A zip whose central directory says reading it needs zip version `version` / 10."""
    data = bytearray(zipped({"conversations.json": b"[]"}))
    central = data.rindex(b"PK\x01\x02")
    data[central + 6 : central + 8] = version.to_bytes(2, "little")  # "version needed to extract"
    return bytes(data)


def chatgpt_with(**fields) -> bytes:
    return json.dumps([{"title": "T", "mapping": {"q": {"message": {"author": {"role": "user"}, "content": {"parts": ["hi"]}}}}, **fields}]).encode()


def webui_with(**fields) -> bytes:
    node = {"id": "u", "parentId": None, "role": "user", "content": "hi", **fields}
    return json.dumps([{"id": "w", "chat": {"title": "W", "history": {"currentId": "u", "messages": {"u": node}}}}]).encode()


def ours_with(**fields) -> bytes:
    c = {"id": "c", "title": "T", "created_at": None, "updated_at": None, "pinned": False, "archived": False, "settings": None,
         "current_message_id": None, "messages": [], **fields}  # fmt: skip
    return zipped({"conversations.json": json.dumps({"format": "local-assistant", "version": 1, "conversations": [c]}).encode()})


def damaged_zip() -> bytes:
    """A zip whose manifest's compressed bytes were overwritten: its header and directory still read."""
    data = bytearray(zipped({"conversations.json": json.dumps([{"title": os.urandom(2000).hex(), "mapping": {}}]).encode()}))
    start = data.index(b"conversations.json") + len("conversations.json") + 100
    data[start : start + 40] = b"\xff" * 40
    return bytes(data)


def encrypted_zip() -> bytes:
    """A zip whose member says it is encrypted (Python's zipfile cannot encrypt; readers then ask for a password)."""
    data = bytearray(zipped({"conversations.json": b"[]"}))
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # the local header's and the directory's flags
        at = data.index(signature) + offset
        data[at] |= 0x1
    return bytes(data)


SMALL_LIMITS = {"zip bomb", "manifest over 1 MB (on its header)"}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_a_bad_file_says_what_is_wrong_and_changes_nothing(name, tmp_path, monkeypatch):
    if name in SMALL_LIMITS:
        monkeypatch.setattr(limits, "MAX_UNPACKED_BYTES", 2 << 20)  # a small bomb stands for a big one
        monkeypatch.setattr(limits, "MAX_JSON_BYTES", 1 << 20)  # and a small manifest for a big one
    repository = make_repository(tmp_path)
    rich_history(repository, tmp_path)
    before = snapshot(tmp_path)
    build, message = BAD_FILES[name]
    with pytest.raises(InvalidInput, match=message):
        import_into(repository, build(tmp_path))
    assert snapshot(tmp_path) == before


def test_an_import_is_one_transaction(tmp_path):
    repository = make_repository(tmp_path / "a")
    rich_history(repository, tmp_path)
    document, names, data = exported(repository)
    document["conversations"][1]["messages"][0]["details"] = {"model": "x"}  # the second one is broken
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = {n: archive.read(n) for n in names}
    members["conversations.json"] = json.dumps(document).encode()
    target = make_repository(tmp_path / "b")
    with pytest.raises(InvalidInput, match="unknown shape"):
        import_into(target, zipped(members))
    assert target.list_conversations() == [] and target.list_conversations(archived=True) == []
    assert [p for p in (tmp_path / "b" / "files").rglob("*") if p.is_file()] == []
