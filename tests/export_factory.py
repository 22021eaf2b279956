"""Exports made on the spot for the import tests: this app's format and ChatGPT's, as media_factory.py makes media."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from tests import media_factory as make


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


def chatgpt(mapping: dict, title: str = "From ChatGPT", **extra) -> bytes:
    return json.dumps([{"title": title, "create_time": 1700000000, "update_time": 1700000100, "mapping": mapping, **extra}]).encode()


def chatgpt_node(id: str, parent: str | None, role: str | None, parts: list, **message_extra) -> dict:
    body = None if role is None else {"id": id, "author": {"role": role}, "create_time": 1700000000.5,
                                      "content": {"content_type": "multimodal_text", "parts": parts}, **message_extra}  # fmt: skip
    return {"id": id, "message": body, "parent": parent, "children": []}


def png_bytes(tmp_path: Path, name: str = "p.png", size=(96, 64), color=(220, 20, 20)) -> bytes:
    return make.png(tmp_path / name, size, color).read_bytes()
