"""The JSON of hostile exports, through the page: deep, long and odd shapes, and sizes and counts checked before the work."""

from __future__ import annotations

import json
import tracemalloc

import gradio as gr
import pytest

from domain import limits
from tests.export_factory import attachment, chatgpt, chatgpt_node, conversation, message, ours, png_bytes
from tests.helpers import zipped


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
