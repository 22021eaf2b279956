"""Export and import of conversations as zip files; knows nothing of models or UI.

Our format is lossless: `conversations.json` holds every conversation's whole tree, settings and answer
details; `files/` holds each attachment once, named by its SHA-256; `markdown/` holds each conversation's
active path as Markdown, for people. Import also reads ChatGPT's and Open WebUI's exports
(storage.foreign); every format becomes `ImportedConversation`s (storage.interchange) first, their files waiting in a scratch folder
(storage.import_files); the assistant layer checks those files as it checks uploads; then one transaction stores them.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from domain import limits
from domain.errors import InvalidInput
from domain.i18n import Text, t
from domain.types import Attachment, MediaKind, Message, Role, Transcript, TranscriptStatus
from storage import foreign, manifest
from storage.import_files import ImportFiles, read_member
from storage.interchange import FORMAT, FORMAT_VERSION, MANIFEST, ExportedConversation, ImportedConversation, ImportSummary

# --- export -------------------------------------------------------------------------------------------------


def export_zip(conversations: list[ExportedConversation], out: io.BufferedIOBase | Path) -> None:
    document = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "exported_at": datetime.now(UTC).isoformat(),
        "conversations": [_conversation_json(c) for c in conversations],
    }
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST, json.dumps(document, ensure_ascii=False, indent=1))
        written: set[str] = set()
        for conversation in conversations:
            for message in conversation.messages:
                for attachment in _files(message):
                    name = _file_member(attachment.sha256, attachment.path)
                    if name not in written:
                        archive.write(attachment.path, name)
                        written.add(name)
        for i, conversation in enumerate(conversations):
            archive.writestr(f"markdown/{i + 1:04d} {safe_name(conversation.title)}.md", _markdown(conversation))


def _files(message: Message) -> tuple[Attachment, ...]:
    """A message's files as the export lists them: an answer's spoken form is its file (imported back as such)."""
    return (*message.attachments, message.speech) if message.speech is not None else message.attachments


def _file_member(sha256: str, path: Path) -> str:
    return f"files/{sha256}{path.suffix}"


def _conversation_json(c: ExportedConversation) -> dict:
    return {
        "id": c.id,
        "title": c.title,
        "created_at": c.created_at.isoformat(),
        "updated_at": c.updated_at.isoformat(),
        "pinned": c.pinned,
        "archived": c.archived,
        "settings": c.settings.model_dump(mode="json", exclude_none=True) or None,
        "current_message_id": c.current_leaf_id,
        "messages": [
            {
                "id": m.id,
                "parent_id": m.parent_id,
                "role": m.role.value,
                "text": m.text,
                "status": m.status.value,
                "error": None if m.error is None else str(m.error),  # English, as the API says it
                "details": m.details.model_dump(mode="json") if m.details else None,
                "created_at": m.created_at.isoformat() if m.created_at else None,
                "attachments": [
                    {
                        "sha256": a.sha256,
                        "kind": a.kind.value,
                        "mime": a.mime,
                        "filename": a.filename,
                        "size_bytes": a.size_bytes,
                        "file": _file_member(a.sha256, a.path),
                        "transcript": _transcript_json(a.transcript),
                    }
                    for a in _files(m)
                ],
            }
            for m in c.messages
        ],
    }


def _transcript_json(transcript: Transcript | None) -> dict | None:
    if transcript is None:
        return None
    return {
        "status": transcript.status.value,
        "text": transcript.text,
        "language": transcript.language,
        "seconds": transcript.seconds,
        "model": transcript.model,
        "error": None if transcript.error is None else str(transcript.error),
    }


def _markdown(c: ExportedConversation) -> str:
    by_id = {m.id: m for m in c.messages}
    path, node = [], c.current_leaf_id
    while node is not None and node in by_id:
        path.append(by_id[node])
        node = by_id[node].parent_id
    lines = [f"# {c.title}", ""]
    for message in reversed(path):
        lines.append("**You:**" if message.role is Role.USER else "**Assistant:**")
        for a in _files(message):
            target = "../" + _file_member(a.sha256, a.path)
            icon = "🎬" if a.kind is MediaKind.VIDEO else "🔊"
            lines.append(f"![{a.filename}]({target})" if a.kind is MediaKind.IMAGE else f"[{icon} {a.filename}]({target})")
            if a.transcript is not None and a.transcript.status is TranscriptStatus.DONE:
                lines.append(f"> 🗣 {a.transcript.text}")
        lines += [message.text, ""]
    return "\n".join(lines)


def safe_name(title: str, length: int = 80) -> str:
    """A title as a file name: word characters, spaces and . , ( ) - only."""
    return re.sub(r"[^\w .,()-]+", "_", title).strip()[:length] or "conversation"


# --- import -------------------------------------------------------------------------------------------------


def read_archive(source: Path | BinaryIO, folder: Path) -> tuple[list[ImportedConversation], ImportSummary]:
    """Parse an export (ours, ChatGPT's or Open WebUI's; a zip, or their bare JSON) from a file, never reading more
    than its limits allow; its files go to `folder`, a scratch folder the caller deletes. InvalidInput says what is
    wrong. The files are not checked here: kind and mime are for the assistant layer to find out."""
    summary = ImportSummary()
    conversations = _read(source, ImportFiles(folder), summary)
    summary.count(conversations)
    return conversations, summary


def _read(source: Path | BinaryIO, files: ImportFiles, summary: ImportSummary) -> list[ImportedConversation]:
    if zipfile.is_zipfile(source):
        try:
            archive = zipfile.ZipFile(source)
        except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError, ValueError):  # a damaged directory
            raise InvalidInput(t("import.damaged_zip")) from None
        with archive:
            members = _checked_members(archive)
            name = _find_manifest(members)
            document = load_json(read_member(archive, members[name], limits.MAX_JSON_BYTES), name)
            if isinstance(document, dict) and document.get("format") == FORMAT:
                return manifest.read(document, archive, members, files, summary)
            return foreign.read(document, files, summary)
    with source.open("rb") if isinstance(source, Path) else nullcontext(source) as stream:
        stream.seek(0)
        if stream.read(4096).removeprefix(b"\xef\xbb\xbf").lstrip()[:1] not in (b"[", b"{"):
            raise InvalidInput(t("import.not_a_zip"))
        stream.seek(0)
        data = stream.read(limits.MAX_JSON_BYTES + 1)
    if len(data) > limits.MAX_JSON_BYTES:
        raise InvalidInput(t("import.json_too_big", mb=limits.MAX_JSON_BYTES // 1024**2))
    document = load_json(data, t("import.the_file"))
    if isinstance(document, dict) and document.get("format") == FORMAT:
        raise InvalidInput(t("import.manifest_alone"))
    return foreign.read(document, files, summary)


def _checked_members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    infos = archive.infolist()
    if len(infos) > limits.MAX_MEMBERS:
        raise InvalidInput(t("import.too_many_members", count=len(infos), limit=limits.MAX_MEMBERS))
    total = sum(info.file_size for info in infos)
    if total > limits.MAX_UNPACKED_BYTES:
        raise InvalidInput(t("import.zip_bomb", gb=total / 1024**3, limit_gb=limits.MAX_UNPACKED_BYTES / 1024**3))
    members = {}
    for info in infos:
        if not info.filename.strip("/\\"):
            raise InvalidInput(t("import.nameless_member"))
        path = PurePosixPath(info.filename.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", info.filename):
            raise InvalidInput(t("import.unsafe_name", name=info.filename))
        if info.flag_bits & 0x1:
            raise InvalidInput(t("import.encrypted"))
        if not info.is_dir():
            members[str(path)] = info
    return members


def _find_manifest(members: dict[str, zipfile.ZipInfo]) -> str:
    candidates = [name for name in members if PurePosixPath(name).name == MANIFEST]
    if not candidates:
        raise InvalidInput(t("import.no_manifest", manifest=MANIFEST))
    name = min(candidates, key=lambda name: name.count("/"))
    # Checked on the header, before a byte is read: a small zip can hold a manifest of gigabytes.
    if members[name].file_size > limits.MAX_JSON_BYTES:
        raise InvalidInput(
            t("import.manifest_too_big", name=name, mb=members[name].file_size / 1024**2, manifest=MANIFEST,
              limit_mb=limits.MAX_JSON_BYTES // 1024**2)
        )
    return name


def load_json(raw: bytes | bytearray, name: str | Text):
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise InvalidInput(t("import.bad_json", name=name, line=error.lineno, column=error.colno)) from None
    except UnicodeDecodeError:
        raise InvalidInput(t("import.not_utf8", name=name)) from None
    except RecursionError:
        # Python's parser recurses once per level: thousands of nested lists are a hostile file, not an export.
        raise InvalidInput(t("import.too_deep", name=name)) from None
    except ValueError:  # an integer of more digits than Python converts
        raise InvalidInput(t("import.long_number", name=name)) from None
