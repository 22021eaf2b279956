"""Other apps' exports as ImportedConversations, branches kept: one function per format.

ChatGPT: `conversations.json`, a list of conversations whose `mapping` is a tree of nodes
(`parent`/`children`, the shown branch ends at `current_node`). Open WebUI: a list of chats whose
`chat.history.messages` is a tree (`parentId`/`childrenIds`, shown branch ends at `currentId`).
Text, roles, titles and times come over; images embedded as data URLs become attachments; anything
else a message held is named in the summary.
"""

from __future__ import annotations

import base64
import binascii
import re

from domain import limits
from domain.errors import InvalidInput
from domain.types import MediaKind, Role
from storage.exchange import ImportedConversation, ImportedFile, ImportedMessage, ImportSummary, parse_time

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)(?:;[\w=.+-]+)*;base64,(?P<data>[A-Za-z0-9+/=\s]+)$")
_ROLES = {"user": Role.USER, "assistant": Role.ASSISTANT}


def read(document, summary: ImportSummary) -> list[ImportedConversation]:
    """Tell the format by its shape; InvalidInput if it is neither."""
    if isinstance(document, dict):
        document = [document]
    if not isinstance(document, list) or not document or not all(isinstance(item, dict) for item in document):
        raise InvalidInput("The JSON is not a list of conversations from ChatGPT or Open WebUI.")
    if all("mapping" in item for item in document):
        return [chatgpt_conversation(item, summary) for item in document]
    if all(isinstance(item.get("chat"), dict) and "history" in item["chat"] for item in document):
        return [open_webui_chat(item, summary) for item in document]
    raise InvalidInput(
        "The JSON is of a shape this app does not know: expected ChatGPT's conversations.json "
        "(with “mapping”) or Open WebUI's chat export (with “chat.history”)."
    )


def chatgpt_conversation(item: dict, summary: ImportSummary) -> ImportedConversation:
    title = str(item.get("title") or "Imported chat")
    mapping = item["mapping"]
    if not isinstance(mapping, dict):
        raise InvalidInput(f"“{title}”: its mapping is not an object.")
    kept: dict[str, ImportedMessage] = {}

    def nearest_kept(node_id):
        seen = set()
        while node_id is not None and node_id not in kept and node_id not in seen:
            seen.add(node_id)
            node_id = (mapping.get(node_id) or {}).get("parent")
        return node_id if node_id in kept else None

    for node_id in _parents_first(mapping, "parent"):
        node = mapping[node_id]
        message = node.get("message")
        if not message:
            continue  # the tree's root holds no message
        role = _ROLES.get(((message.get("author") or {}).get("role")))
        content = message.get("content") or {}
        text, files = _chatgpt_parts(content, title, summary)
        if role is None:
            if text.strip():
                summary.skipped.append(f"a {(message.get('author') or {}).get('role')} message in “{title}”")
            continue
        if not text.strip() and not files:
            continue  # hidden empty system-like turns
        kept[node_id] = ImportedMessage(
            key=node_id,
            parent_key=nearest_kept(node.get("parent")),
            role=role,
            text=text,
            created_at=parse_time(message.get("create_time")),
            files=files,
        )
    return ImportedConversation(
        title=title,
        messages=list(kept.values()),
        current_key=nearest_kept(item.get("current_node")) if item.get("current_node") in mapping else _last(kept),
        created_at=parse_time(item.get("create_time")),
        updated_at=parse_time(item.get("update_time")),
        archived=bool(item.get("is_archived")),
    )


def _chatgpt_parts(content: dict, title: str, summary: ImportSummary) -> tuple[str, list[ImportedFile]]:
    kind = content.get("content_type", "text")
    if kind not in ("text", "multimodal_text"):
        summary.skipped.append(f"a “{kind}” message in “{title}”")
        return "", []
    texts, files = [], []
    for part in content.get("parts") or []:
        if isinstance(part, str):
            file = _data_url_file(part, f"image-{len(files) + 1}", summary, title)
            if file is not None:
                files.append(file)
            else:
                texts.append(part)
        elif isinstance(part, dict):
            url = part.get("image_url") if isinstance(part.get("image_url"), str) else (part.get("image_url") or {}).get("url")
            file = _data_url_file(url, f"image-{len(files) + 1}", summary, title) if url else None
            if file is not None:
                files.append(file)
            else:
                summary.skipped.append(f"a “{part.get('content_type', 'non-text')}” part in “{title}”")
    return "\n".join(texts), files


def open_webui_chat(item: dict, summary: ImportSummary) -> ImportedConversation:
    chat = item["chat"]
    title = str(chat.get("title") or item.get("title") or "Imported chat")
    history = chat.get("history") or {}
    nodes = history.get("messages") or {}
    if not isinstance(nodes, dict):
        raise InvalidInput(f"“{title}”: its chat.history.messages is not an object.")
    messages: dict[str, ImportedMessage] = {}
    for node_id in _parents_first(nodes, "parentId"):
        node = nodes[node_id]
        role = _ROLES.get(node.get("role"))
        if role is None:
            summary.skipped.append(f"a {node.get('role')} message in “{title}”")
            continue
        files = []
        for i, attached in enumerate(node.get("files") or []):
            url = attached.get("url") if isinstance(attached, dict) else None
            file = _data_url_file(url, str(attached.get("name") or f"image-{i + 1}"), summary, title) if url else None
            if file is not None:
                files.append(file)
            else:
                summary.skipped.append(f"a {attached.get('type', 'file') if isinstance(attached, dict) else 'file'} in “{title}”")
        parent = node.get("parentId")
        messages[node_id] = ImportedMessage(
            key=node_id,
            parent_key=parent if parent in messages else None,
            role=role,
            text=str(node.get("content") or ""),
            created_at=parse_time(node.get("timestamp")),
            files=files,
        )
    current = history.get("currentId")
    return ImportedConversation(
        title=title,
        messages=list(messages.values()),
        current_key=current if current in messages else _last(messages),
        created_at=parse_time(item.get("created_at")),
        updated_at=parse_time(item.get("updated_at")),
        pinned=bool(item.get("pinned")),
        archived=bool(item.get("archived")),
    )


def _parents_first(nodes: dict, parent_field: str) -> list[str]:
    """Node ids ordered so that every parent comes before its children (cycles and dangling parents cut)."""
    order, placed = [], set()

    def place(node_id, trail=()):
        if node_id in placed or node_id in trail or node_id not in nodes:
            return
        node = nodes[node_id]
        parent = node.get(parent_field) if isinstance(node, dict) else None
        if parent is not None:
            place(parent, (*trail, node_id))
        placed.add(node_id)
        order.append(node_id)

    for node_id in nodes:
        if not isinstance(nodes[node_id], dict):
            raise InvalidInput("A conversation's message tree holds something that is not a message.")
        place(node_id)
    return order


def _data_url_file(url: str | None, name: str, summary: ImportSummary, title: str) -> ImportedFile | None:
    match = _DATA_URL.match(url or "")
    if not match:
        return None
    mime = match["mime"].lower()
    kind = MediaKind.IMAGE if mime.startswith("image/") else MediaKind.AUDIO if mime.startswith("audio/") else None
    if kind is None:
        summary.skipped.append(f"a {mime} file in “{title}”")
        return None
    try:
        data = base64.b64decode(match["data"], validate=False)
    except (binascii.Error, ValueError):
        summary.skipped.append(f"an unreadable embedded image in “{title}”")
        return None
    if len(data) > limits.MAX_FILE_BYTES:
        summary.skipped.append(f"a file over {limits.MAX_FILE_BYTES // 2**20} MB in “{title}”")
        return None
    suffix = mime.split("/")[1].split("+")[0]
    return ImportedFile(data=data, filename=f"{name}.{suffix}" if "." not in name else name, mime=mime, kind=kind)


def _last(messages: dict) -> str | None:
    return next(reversed(messages), None) if messages else None
