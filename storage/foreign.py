"""Other apps' exports as ImportedConversations, branches kept: one function per format.

ChatGPT: `conversations.json`, a list of conversations whose `mapping` is a tree of nodes
(`parent`/`children`, the shown branch ends at `current_node`). Open WebUI: a list of chats whose
`chat.history.messages` is a tree (`parentId`/`childrenIds`, shown branch ends at `currentId`).
Text, roles, titles and times come over; files embedded as data URLs become attachments (whatever type the URL
declares: the assistant layer finds out what they are); anything else a message held is named in the summary.
Values of the wrong shape where an object or an id belongs count as absent: these formats are read leniently.
"""

from __future__ import annotations

import base64
import binascii
import re

from domain import limits
from domain.errors import InvalidInput
from domain.i18n import t
from domain.types import Role
from storage.import_files import ImportFiles, too_big
from storage.interchange import ImportedConversation, ImportedFile, ImportedMessage, ImportSummary, check_counts, parse_time

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)(?:;[\w=.+-]+)*;base64,(?P<data>[A-Za-z0-9+/=\s]+)$")
_ROLES = {"user": Role.USER, "assistant": Role.ASSISTANT}


def read(document, files: ImportFiles, summary: ImportSummary) -> list[ImportedConversation]:
    """Tell the format by its shape; InvalidInput if it is neither. Embedded files go to `files`."""
    if isinstance(document, dict):
        document = [document]
    if not isinstance(document, list) or not document or not all(isinstance(item, dict) for item in document):
        raise InvalidInput(t("import.not_conversations"))
    if all("mapping" in item for item in document):
        check_counts(len(document), sum(len(item["mapping"]) for item in document if isinstance(item["mapping"], dict)))
        return [chatgpt_conversation(item, files, summary) for item in document]
    if all(isinstance(item.get("chat"), dict) and "history" in item["chat"] for item in document):
        check_counts(len(document), sum(len(_dict(_dict(item["chat"]["history"]).get("messages"))) for item in document))
        return [open_webui_chat(item, files, summary) for item in document]
    raise InvalidInput(t("import.unknown_shape"))


def chatgpt_conversation(item: dict, files: ImportFiles, summary: ImportSummary) -> ImportedConversation:
    title = _text(item.get("title")) or "Imported chat"
    mapping = item["mapping"]
    if not isinstance(mapping, dict):
        raise InvalidInput(t("import.bad_mapping", title=title))
    kept: dict[str, ImportedMessage] = {}
    # Each node's nearest kept ancestor (itself, once kept), known for a parent before its children: walking up the
    # chain for every message instead took hours on a long chain of skipped nodes.
    nearest_kept: dict[str, str | None] = {}

    for node_id in _parents_first(mapping, "parent"):
        node = mapping[node_id]
        parent = nearest_kept.get(_id(node.get("parent")))
        nearest_kept[node_id] = parent
        message = _dict(node.get("message"))
        if not message:
            continue  # the tree's root holds no message
        author = _dict(message.get("author")).get("role")
        role = _ROLES.get(author) if isinstance(author, str) else None
        text, attached = _chatgpt_parts(_dict(message.get("content")), title, files, summary)
        if role is None:
            if text.strip():
                summary.skipped.append(t("import.skipped.role", role=_text(author)[:30] or t("import.non_text"), title=title))
            continue
        if not text.strip() and not attached:
            continue  # hidden empty system-like turns
        nearest_kept[node_id] = node_id
        kept[node_id] = ImportedMessage(
            key=node_id,
            parent_key=parent,
            role=role,
            text=text,
            created_at=parse_time(message.get("create_time"), t("import.where.message_field", key="create_time", title=title)),
            files=attached,
        )
    current = _id(item.get("current_node"))
    return ImportedConversation(
        title=title,
        messages=list(kept.values()),
        current_key=nearest_kept.get(current) if current in mapping else _last(kept),
        created_at=parse_time(item.get("create_time"), t("import.where.field", key="create_time", title=title)),
        updated_at=parse_time(item.get("update_time"), t("import.where.field", key="update_time", title=title)),
        archived=bool(item.get("is_archived")),
    )


def _chatgpt_parts(content: dict, title: str, files: ImportFiles, summary: ImportSummary) -> tuple[str, list[ImportedFile]]:
    kind = content.get("content_type", "text")
    if kind not in ("text", "multimodal_text"):
        summary.skipped.append(t("import.skipped.kind", kind=_text(kind)[:40], title=title))
        return "", []
    parts = content.get("parts")
    texts, attached = [], []
    for part in parts if isinstance(parts, list) else []:
        if isinstance(part, dict):
            image_url = part.get("image_url")
            url = image_url if isinstance(image_url, str) else _dict(image_url).get("url")
            if not _data_url(url):
                summary.skipped.append(t("import.skipped.part", kind=_text(part.get("content_type"))[:40] or t("import.non_text"), title=title))
                continue
            part = url
        if not isinstance(part, str):
            continue
        if embedded := _data_url(part):
            file = _embedded(embedded, f"image-{len(attached) + 1}", files, summary, title)
            attached += [file] if file is not None else []
        else:
            texts.append(part)
    return "\n".join(texts), attached


def open_webui_chat(item: dict, files: ImportFiles, summary: ImportSummary) -> ImportedConversation:
    chat = item["chat"]
    title = _text(chat.get("title")) or _text(item.get("title")) or "Imported chat"
    history = _dict(chat.get("history"))
    nodes = history.get("messages") or {}
    if not isinstance(nodes, dict):
        raise InvalidInput(t("import.bad_history", title=title))
    messages: dict[str, ImportedMessage] = {}
    for node_id in _parents_first(nodes, "parentId"):
        node = nodes[node_id]
        role = _ROLES.get(node.get("role")) if isinstance(node.get("role"), str) else None
        if role is None:
            summary.skipped.append(t("import.skipped.role", role=_text(node.get("role"))[:30] or t("import.non_text"), title=title))
            continue
        attached = []
        listed = node.get("files")
        for i, entry in enumerate(listed if isinstance(listed, list) else []):
            entry = _dict(entry)
            if embedded := _data_url(entry.get("url")):
                file = _embedded(embedded, _text(entry.get("name")) or f"image-{i + 1}", files, summary, title)
                attached += [file] if file is not None else []
            else:
                summary.skipped.append(t("import.skipped.entry", kind=_text(entry.get("type"))[:30] or t("import.file"), title=title))
        parent = _id(node.get("parentId"))
        messages[node_id] = ImportedMessage(
            key=node_id,
            parent_key=parent if parent in messages else None,
            role=role,
            text=_text(node.get("content")),
            created_at=parse_time(node.get("timestamp"), t("import.where.message_field", key="timestamp", title=title)),
            files=attached,
        )
    current = _id(history.get("currentId"))
    return ImportedConversation(
        title=title,
        messages=list(messages.values()),
        current_key=current if current in messages else _last(messages),
        created_at=parse_time(item.get("created_at"), t("import.where.field", key="created_at", title=title)),
        updated_at=parse_time(item.get("updated_at"), t("import.where.field", key="updated_at", title=title)),
        pinned=bool(item.get("pinned")),
        archived=bool(item.get("archived")),
    )


def _parents_first(nodes: dict, parent_field: str) -> list[str]:
    """Node ids ordered so that every parent comes before its children (cycles and dangling parents cut).

    A loop, not recursion: a chain of thousands of messages listed leaf first is an ordinary long chat."""
    order, placed = [], set()
    for start in nodes:
        if not isinstance(nodes[start], dict):
            raise InvalidInput(t("import.not_a_message"))
        chain, on_chain, node_id = [], set(), start
        # Walk up to the first ancestor already placed (or the root, a dangling parent, a cycle) ...
        while node_id in nodes and node_id not in placed and node_id not in on_chain:
            chain.append(node_id)
            on_chain.add(node_id)
            node_id = _id(_dict(nodes[node_id]).get(parent_field))
        # ... then place the chain from the top down.
        for node_id in reversed(chain):
            placed.add(node_id)
            order.append(node_id)
    return order


def _data_url(value) -> re.Match | None:
    return _DATA_URL.match(value) if isinstance(value, str) else None


def _embedded(match: re.Match, name: str, files: ImportFiles, summary: ImportSummary, title: str) -> ImportedFile | None:
    """The file a data: URL holds, kept in `files`; None (and named in the summary) if it cannot be decoded or is
    too large. The type the URL declares is not used."""
    encoded = match["data"]
    if len(encoded) * 3 // 4 > limits.MAX_FILE_BYTES + 3:  # before decoding it
        summary.skipped.append(t("import.skipped.in", what=too_big(name, len(encoded) * 3 // 4), title=title))
        return None
    try:
        data = base64.b64decode(encoded, validate=False)
    except (binascii.Error, ValueError):
        summary.skipped.append(t("import.skipped.unreadable", title=title))
        return None
    if len(data) > limits.MAX_FILE_BYTES:
        summary.skipped.append(t("import.skipped.in", what=too_big(name, len(data)), title=title))
        return None
    kept = files.data(data)
    return ImportedFile(kept.path, kept.sha256, name)


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _text(value) -> str:
    """Text where text belongs; anything else (str() of a deeply nested list could even recurse too far) is none."""
    return value if isinstance(value, str) else ""


def _id(value) -> str | None:
    """A node id as the tree's keys are (text); anything else is no id."""
    return value if isinstance(value, str) else None


def _last(messages: dict) -> str | None:
    return next(reversed(messages), None) if messages else None
