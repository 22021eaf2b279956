"""The page's handler on the real dialogue manager and engine, without a browser."""

from __future__ import annotations

import time
from types import SimpleNamespace

from assistant.dialogue import DialogueManager
from assistant.media import MediaLoader
from assistant.turn_queue import TurnQueue
from tests.test_dialogue import RecordingEngine, ready_host
from ui import render
from ui.app import MIN_UPDATE_INTERVAL_S, ChatHandlers


def test_answer_updates_are_coalesced_and_the_last_one_is_the_saved_answer(engine, repository):
    long = RecordingEngine(engine, max_new_tokens=300)
    handlers = ChatHandlers(DialogueManager(repository, ready_host(long), MediaLoader(), TurnQueue()), None, demo=True)
    stamps, updates = [], []
    for update in handlers.respond(
        {"text": "Tell me a long story", "files": []}, None, False, "", None, None, None, None, SimpleNamespace(session_hash="s")
    ):
        stamps.append(time.monotonic())
        updates.append(update)
    [conversation] = repository.list_conversations()
    answer = repository.get_messages(conversation.id)[-1]
    # The final update carries the whole saved answer, with its footer (the fork link).
    assert updates[-1][0][-1]["content"] == answer.text + render.message_footer(answer)
    tokens = len(engine.processor.tokenizer(answer.text)["input_ids"])
    streamed = stamps[1:-1]  # between the user's turn and the final update
    assert 1 < len(streamed) < tokens  # coalesced: fewer updates than tokens, but still streaming
    gaps = [b - a for a, b in zip(streamed, streamed[1:])]
    assert min(gaps) >= MIN_UPDATE_INTERVAL_S * 0.9
    shown = [u[0][-1]["content"] for u in updates[1:-1]]
    assert all(b.startswith(a) for a, b in zip(shown, shown[1:]))  # each update is the answer so far
