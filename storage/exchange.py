"""Export and import of conversations as zip files; knows nothing of models or UI.

Our format is lossless: `conversations.json` holds every conversation's whole tree, settings and answer
details; `files/` holds each attachment once, named by its SHA-256; `markdown/` holds each conversation's
active path as Markdown, for people. Import also reads ChatGPT's and Open WebUI's exports
(storage.foreign); every format becomes `ImportedConversation`s first, then one transaction stores them.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from domain import limits
from domain.errors import InvalidInput
from domain.types import MediaKind, Message, Role, Status, Transcript, TranscriptStatus

FORMAT = "local-assistant"
FORMAT_VERSION = 1
MANIFEST = "conversations.json"
# Zip bombs: refuse archives that would unpack past these before reading a byte of them.
MAX_UNPACKED_BYTES = 2 * 1024**3
MAX_MEMBERS = 100_000
MAX_JSON_BYTES = 512 * 1024**2


@dataclass
class ImportedFile:
    data: bytes
    filename: str
    mime: str
    kind: MediaKind
    transcript: Transcript | None = None


@dataclass
class ImportedMessage:
    key: str  # unique within its conversation, in the source format
    parent_key: str | None
    role: Role
    text: str
    status: Status = Status.COMPLETE
    error: str | None = None
    details: dict | None = None
    created_at: datetime | None = None
    files: list[ImportedFile] = field(default_factory=list)


@dataclass
class ImportedConversation:
    title: str
    messages: list[ImportedMessage]  # parents before children
    current_key: str | None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    pinned: bool = False
    archived: bool = False
    settings: dict | None = None


@dataclass
class ImportSummary:
    conversations: int = 0
    messages: int = 0
    files: int = 0  # distinct files (the same bytes attached twice count once)
    skipped: list[str] = field(default_factory=list)  # what the source held that did not come over, by name

    def sentence(self) -> str:
        text = f"Imported {self.conversations} conversation(s), {self.messages} message(s), {self.files} file(s)."
        if self.skipped:
            shown = "; ".join(self.skipped[:10]) + (f"; and {len(self.skipped) - 10} more" if len(self.skipped) > 10 else "")
            text += f" Not imported: {shown}."
        return text


# --- export -------------------------------------------------------------------------------------------------


@dataclass
class ExportedConversation:
    """What the repository hands the exporter: one conversation with every message of its tree."""

    id: str
    title: str
    created_at: datetime
    updated_at: datetime
    pinned: bool
    archived: bool
    settings: dict | None
    current_leaf_id: int | None
    messages: list[Message]  # in order of insertion; parents first


def export_zip(conversations: list[ExportedConversation], out: io.BufferedIOBase | Path) -> None:
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "exported_at": datetime.now(UTC).isoformat(),
        "conversations": [_conversation_json(c) for c in conversations],
    }
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1))
        written: set[str] = set()
        for conversation in conversations:
            for message in conversation.messages:
                for attachment in message.attachments:
                    name = _file_member(attachment.sha256, attachment.path)
                    if name not in written:
                        archive.write(attachment.path, name)
                        written.add(name)
        for i, conversation in enumerate(conversations):
            archive.writestr(f"markdown/{i + 1:04d} {safe_name(conversation.title)}.md", _markdown(conversation))


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
        "settings": c.settings,
        "current_message_id": c.current_leaf_id,
        "messages": [
            {
                "id": m.id,
                "parent_id": m.parent_id,
                "role": m.role.value,
                "text": m.text,
                "status": m.status.value,
                "error": m.error,
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
                    for a in m.attachments
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
        "error": transcript.error,
    }


def _transcript(value) -> Transcript | None:
    if not value:
        return None
    seconds = value.get("seconds")
    return Transcript(
        status=TranscriptStatus(value["status"]),
        text=str(value.get("text") or ""),
        language=None if value.get("language") is None else str(value["language"])[:16],
        seconds=None if seconds is None else float(seconds),
        model=str(value.get("model") or "")[:200],
        error=None if value.get("error") is None else str(value["error"]),
    )


def _markdown(c: ExportedConversation) -> str:
    by_id = {m.id: m for m in c.messages}
    path, node = [], c.current_leaf_id
    while node is not None and node in by_id:
        path.append(by_id[node])
        node = by_id[node].parent_id
    lines = [f"# {c.title}", ""]
    for message in reversed(path):
        lines.append("**You:**" if message.role is Role.USER else "**Assistant:**")
        for a in message.attachments:
            target = "../" + _file_member(a.sha256, a.path)
            lines.append(f"![{a.filename}]({target})" if a.kind is MediaKind.IMAGE else f"[🔊 {a.filename}]({target})")
            if a.transcript is not None and a.transcript.status is TranscriptStatus.DONE:
                lines.append(f"> 🗣 {a.transcript.text}")
        lines += [message.text, ""]
    return "\n".join(lines)


def safe_name(title: str, length: int = 80) -> str:
    """A title as a file name: word characters, spaces and . , ( ) - only."""
    return re.sub(r"[^\w .,()-]+", "_", title).strip()[:length] or "conversation"


# --- import -------------------------------------------------------------------------------------------------


def read_archive(data: bytes) -> tuple[list[ImportedConversation], ImportSummary]:
    """Parse an export (ours, ChatGPT's or Open WebUI's; a zip, or their bare JSON); InvalidInput says what is wrong."""
    conversations, summary = _read(data)
    summary.conversations = len(conversations)
    summary.messages = sum(len(c.messages) for c in conversations)
    summary.files = len({hashlib.sha256(f.data).digest() for c in conversations for m in c.messages for f in m.files})
    return conversations, summary


def _read(data: bytes) -> tuple[list[ImportedConversation], ImportSummary]:
    from storage import foreign

    summary = ImportSummary()
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = _checked_members(archive)
            name = _find_manifest(members)
            document = _load_json(archive.read(name), name)
            if isinstance(document, dict) and document.get("format") == FORMAT:
                return _read_ours(document, archive, members, summary), summary
            return foreign.read(document, summary), summary
    if data.lstrip()[:1] in (b"[", b"{"):
        document = _load_json(data, "the file")
        if isinstance(document, dict) and document.get("format") == FORMAT:
            raise InvalidInput("This is this app's export without its zip: import the .zip file it came in.")
        return foreign.read(document, summary), summary
    raise InvalidInput("This is not an export this app can read: expected a .zip file (or ChatGPT's conversations.json).")


def _checked_members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise InvalidInput(f"The zip holds {len(infos):,} files; an export holds at most {MAX_MEMBERS:,}.")
    total = sum(info.file_size for info in infos)
    if total > MAX_UNPACKED_BYTES:
        raise InvalidInput(
            f"The zip would unpack to {total / 1024**3:.1f} GB; the limit is {MAX_UNPACKED_BYTES / 1024**3:.0f} GB "
            "(this looks like a zip bomb)."
        )
    members = {}
    for info in infos:
        path = PurePosixPath(info.filename.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", info.filename):
            raise InvalidInput(f"The zip holds a file with an unsafe name (“{info.filename}”); nothing was imported.")
        if not info.is_dir():
            members[str(path)] = info
    return members


def _find_manifest(members: dict[str, zipfile.ZipInfo]) -> str:
    candidates = [name for name in members if PurePosixPath(name).name == MANIFEST]
    if not candidates:
        raise InvalidInput(f"The zip has no {MANIFEST}: it is not an export of this app or of ChatGPT.")
    return min(candidates, key=lambda name: name.count("/"))


def _load_json(raw: bytes, name: str):
    if len(raw) > MAX_JSON_BYTES:
        raise InvalidInput(f"{name} is larger than {MAX_JSON_BYTES // 1024**2} MB.")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidInput(f"{name} is not valid JSON ({error}).") from None


def _read_ours(document: dict, archive: zipfile.ZipFile, members: dict, summary: ImportSummary) -> list[ImportedConversation]:
    if document.get("version") != FORMAT_VERSION:
        raise InvalidInput(f"This export has format version {document.get('version')}; this app reads version {FORMAT_VERSION}.")
    try:
        return [_our_conversation(c, archive, members) for c in document["conversations"]]
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidInput(f"{MANIFEST} is not in the shape this app writes ({type(error).__name__}: {error}).") from None


def _our_conversation(c: dict, archive: zipfile.ZipFile, members: dict) -> ImportedConversation:
    messages = []
    for m in c["messages"]:
        files = []
        for a in m["attachments"]:
            if a["file"] not in members:
                raise InvalidInput(f"The zip lacks {a['file']} (“{a['filename']}”), which a message needs; nothing was imported.")
            if members[a["file"]].file_size > limits.MAX_FILE_BYTES:
                raise InvalidInput(f"{a['file']} is larger than {limits.MAX_FILE_BYTES // 2**20} MB.")
            files.append(
                ImportedFile(
                    archive.read(a["file"]), str(a["filename"]), str(a["mime"]), MediaKind(a["kind"]), _transcript(a.get("transcript"))
                )
            )
        messages.append(
            ImportedMessage(
                key=str(m["id"]),
                parent_key=None if m["parent_id"] is None else str(m["parent_id"]),
                role=Role(m["role"]),
                text=str(m["text"]),
                status=Status(m["status"]),
                error=m["error"],
                details=m["details"],
                created_at=parse_time(m["created_at"]),
                files=files,
            )
        )
    current = c["current_message_id"]
    return ImportedConversation(
        title=str(c["title"]),
        messages=messages,
        current_key=None if current is None else str(current),
        created_at=parse_time(c["created_at"]),
        updated_at=parse_time(c["updated_at"]),
        pinned=bool(c["pinned"]),
        archived=bool(c["archived"]),
        settings=c["settings"],
    )


def parse_time(value) -> datetime | None:
    """ISO text, or seconds (or milliseconds) since the epoch, as naive UTC."""
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        if value > 1e11:  # milliseconds
            value /= 1000
        return datetime.fromtimestamp(value, UTC).replace(tzinfo=None)
    parsed = datetime.fromisoformat(str(value))
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed
