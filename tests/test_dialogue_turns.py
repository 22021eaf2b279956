"""The dialogue manager on the real engine, storage and media: turns, their events, Stop, the queue, branches, settings."""

from __future__ import annotations

import threading
import time

import pytest

from assistant.dialogue import DialogueManager, ReplyDelta, ReplyFinished, UserTurnSaved, WaitingForModel
from assistant.media import MediaLoader
from assistant.model_host import ModelHost
from assistant.turn_queue import TurnQueue
from domain import limits
from domain.errors import InvalidInput
from domain.types import MediaKind, Role, Status
from tests.engine_helpers import RecordingEngine, ready_host
from tests.helpers import run, wait_until


def test_turn_two_sends_turn_one_media_and_answer(engine, repository, png_file, speech_wav):
    recording = RecordingEngine(engine)
    manager = DialogueManager(repository, ready_host(recording), MediaLoader(), TurnQueue())
    first = run(manager, None, "What is in this picture?", [(png_file, "car.png"), (speech_wav, "q.wav")])
    conversation_id = first[0].conversation.id
    answer_one = first[-1].message.text
    assert answer_one.strip()

    second = run(manager, conversation_id, "What colour was the car in the first picture?")
    assert isinstance(second[-1], ReplyFinished) and second[-1].message.status is Status.COMPLETE

    turn_two = recording.prepared[-1]
    processor = engine.processor
    ids = turn_two["input_ids"][0]
    # Turn 1's image and audio are model inputs again on turn 2, not just remembered as text.
    assert turn_two["image_grid_thw"].shape[0] == 1
    assert (ids == processor.image_token_id).sum() == turn_two["image_grid_thw"][0].prod() // 4
    assert turn_two["input_features"].shape[0] == 1
    assert (ids == processor.audio_token_id).sum() > 25
    prompt = processor.tokenizer.decode(ids)
    assert prompt.count("<|vision_bos|>") == 1 and prompt.count("<|audio_bos|>") == 1
    assert prompt.index("<|vision_bos|>") < prompt.index("What is in this picture?") < prompt.index("first picture")
    assert f"<|im_start|>assistant\n{answer_one}<|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")

    saved = repository.get_messages(conversation_id)
    assert [m.role for m in saved] == [Role.USER, Role.ASSISTANT, Role.USER, Role.ASSISTANT]
    assert [a.kind for a in saved[0].attachments] == [MediaKind.IMAGE, MediaKind.AUDIO]


def test_events_arrive_in_order_and_the_answer_is_saved(engine, repository):
    manager = DialogueManager(repository, ready_host(engine), MediaLoader(), TurnQueue())
    events = run(manager, None, "Hello")
    assert isinstance(events[0], UserTurnSaved)
    deltas = [e for e in events if isinstance(e, ReplyDelta)]
    assert len(deltas) > 1 and all(b.text.startswith(a.text) for a, b in zip(deltas, deltas[1:]))
    final = events[-1].message
    assert final.text == deltas[-1].text and final.status is Status.COMPLETE
    assert repository.get_messages(final.conversation_id)[-1] == final
    assert repository.list_conversations()[0].title == "Hello"


def test_stop_keeps_the_partial_answer(engine, repository):
    long = RecordingEngine(engine, max_new_tokens=200)
    manager = DialogueManager(repository, ready_host(long), MediaLoader(), TurnQueue())
    stop = threading.Event()
    seen = ""
    for event in manager.send(None, "Tell me a long story", [], stop):
        if isinstance(event, ReplyDelta):
            seen = event.text
            stop.set()
        last = event
    assert isinstance(last, ReplyFinished)
    assert last.message.status is Status.STOPPED
    assert last.message.text == seen and seen
    assert len(long.processor.tokenizer(seen)["input_ids"]) < 20


def test_answer_is_saved_while_it_streams(engine, repository, monkeypatch):
    monkeypatch.setattr(limits, "SAVE_INTERVAL_S", 0.0)
    manager = DialogueManager(repository, ready_host(engine), MediaLoader(), TurnQueue())
    snapshots = []
    for event in manager.send(None, "Hi", [], threading.Event()):
        if isinstance(event, UserTurnSaved):
            conversation_id = event.conversation.id
        if isinstance(event, ReplyDelta):
            time.sleep(0.1)  # a reader that takes its time: the answer's writer, in a thread of its own, saves meanwhile
            stored = repository.get_messages(conversation_id)[-1]
            snapshots.append((stored.status, stored.text, event.text))
    assert len(snapshots) > 2
    assert all(status is Status.STREAMING for status, _, _ in snapshots)
    # Saved as it grows: what is stored is always the start of what was shown, and something is stored by the time
    # a reader has looked at a piece for a while.
    assert all(shown.startswith(stored) and stored for _, stored, shown in snapshots)


def test_closing_the_page_mid_answer_keeps_what_was_said(engine, repository):
    manager = DialogueManager(repository, ready_host(RecordingEngine(engine, max_new_tokens=200)), MediaLoader(), TurnQueue())
    events = manager.send(None, "Hi", [], threading.Event())
    for event in events:
        if isinstance(event, ReplyDelta):
            break
    events.close()  # what Gradio does when the browser goes away
    [_, reply] = repository.get_messages(repository.list_conversations()[0].id)
    assert reply.status is Status.STOPPED and reply.text == event.text


def test_messages_sent_while_loading_wait_then_get_answered(engine, repository):
    release = threading.Event()

    def slow_load(progress):
        progress("Loading weights…", 0.5)
        release.wait(10)
        return engine

    manager = DialogueManager(repository, ModelHost(slow_load).start(), MediaLoader(), TurnQueue())
    events = manager.send(None, "Are you there?", [], threading.Event())
    assert isinstance(next(events), UserTurnSaved)
    waiting = next(events)
    assert isinstance(waiting, WaitingForModel) and "Loading weights" in waiting.status
    # The question is stored with its answer, which waits for the model (a stop now would leave it interrupted).
    stored = repository.get_messages(repository.list_conversations()[0].id)
    assert [(m.role, m.status) for m in stored] == [(Role.USER, Status.COMPLETE), (Role.ASSISTANT, Status.STREAMING)]
    release.set()
    rest = list(events)
    assert rest[-1].message.status is Status.COMPLETE and rest[-1].message.text


# --- the queue: one model, the turns waiting for it -------------------------------------------------------


def start_long_turn(manager, text="Tell me a long story"):
    """Start a turn in a thread, return (its events list, its thread, the stop event)."""
    events: list = []
    stop = threading.Event()
    thread = threading.Thread(target=lambda: events.extend(manager.send(None, text, [], stop)), daemon=True)
    thread.start()
    return events, thread, stop


def test_a_waiting_turn_shows_its_place_and_stop_cancels_it_at_once(engine, repository):
    from assistant.dialogue import Queued

    long = RecordingEngine(engine, max_new_tokens=4000)
    manager = DialogueManager(repository, ready_host(long), MediaLoader(), TurnQueue())
    first_events, first, first_stop = start_long_turn(manager)
    wait_until(lambda: any(isinstance(e, ReplyDelta) for e in first_events), 20, 0.01, "the first answer did not start")

    stop = threading.Event()
    waiting = manager.send(None, "me next", [], stop)
    assert isinstance(next(waiting), UserTurnSaved)
    queued = next(waiting)
    assert queued == Queued(ahead=1)
    prepared = len(long.inputs)
    stop.set()
    rest = list(waiting)
    # At once, not when the other answer ends: the first answer (4000 tokens, ended only by its own Stop below) was
    # still streaming when this turn was over. Order, not seconds: a loaded machine cannot make this fail.
    assert not any(isinstance(e, ReplyFinished) for e in first_events)
    assert rest[-1].message.status is Status.STOPPED
    assert len(long.inputs) == prepared  # its inputs were never built
    assert first.is_alive()  # the other answer goes on
    first_stop.set()
    first.join(20)
    assert first_events[-1].message.status is Status.STOPPED


def test_the_model_is_handed_on_when_generation_ends_not_when_the_reader_is_done(engine, repository):
    manager = DialogueManager(repository, ready_host(RecordingEngine(engine, max_new_tokens=16)), MediaLoader(), TurnQueue())
    slow_reader = manager.send(None, "first", [], threading.Event())
    for event in slow_reader:
        if isinstance(event, ReplyDelta):
            break  # this reader now dawdles (a slow page) while the model finishes
    wait_until(lambda: not len(manager.queue), 20, 0.01, "the queue was not released when generation ended")
    second = run(manager, None, "second")  # gets the model though the first page has not read its answer
    assert second[-1].message.status is Status.COMPLETE
    rest = list(slow_reader)
    assert rest[-1].message.status is Status.COMPLETE


# --- branches --------------------------------------------------------------------------------------------


def test_regenerate_answers_the_same_question_again_without_the_old_answer(engine, repository):
    recording = RecordingEngine(engine)
    manager = DialogueManager(repository, ready_host(recording), MediaLoader(), TurnQueue())
    first = run(manager, None, "Hello there")
    conversation_id, old = first[0].conversation.id, first[-1].message
    events = list(manager.regenerate(conversation_id, threading.Event()))
    new = events[-1].message
    assert new.status is Status.COMPLETE and new.id != old.id and new.parent_id == old.parent_id
    path = repository.get_messages(conversation_id)
    assert [m.id for m in path] == [old.parent_id, new.id] and (path[-1].version, path[-1].versions) == (2, 2)
    assert new == path[-1]  # the final event's answer, made in memory, is the stored one, its version included
    prompt = engine.processor.tokenizer.decode(recording.prepared[-1]["input_ids"][0])
    assert old.text not in prompt and prompt.count("Hello there") == 1


def test_edit_continues_from_the_edited_question_with_its_files(engine, repository, png_file):
    recording = RecordingEngine(engine)
    manager = DialogueManager(repository, ready_host(recording), MediaLoader(), TurnQueue())
    first = run(manager, None, "What is this?", [(png_file, "car.png")])
    conversation_id, question = first[0].conversation.id, first[0].message
    run(manager, conversation_id, "Second question")
    events = list(manager.edit(question.id, "What colour is this?", threading.Event()))
    assert events[-1].message.status is Status.COMPLETE
    path = repository.get_messages(conversation_id)
    assert [m.text for m in path][0] == "What colour is this?" and len(path) == 2
    assert [a.filename for a in path[0].attachments] == ["car.png"]
    prompt = engine.processor.tokenizer.decode(recording.prepared[-1]["input_ids"][0])
    assert "What colour is this?" in prompt and "<|vision_bos|>" in prompt
    assert "What is this?" not in prompt and "Second question" not in prompt
    # With its image kept, a question may lose its text; a text-only one may not.
    assert list(manager.edit(path[0].id, "  ", threading.Event()))[-1].message.status is Status.COMPLETE
    text_only = run(manager, None, "just words")[0].message
    with pytest.raises(InvalidInput, match="Type a message"):
        list(manager.edit(text_only.id, "  \n", threading.Event()))


def test_a_conversation_being_answered_cannot_be_deleted(engine, repository):
    from domain.errors import ConversationBusy

    manager = DialogueManager(repository, ready_host(RecordingEngine(engine, max_new_tokens=200)), MediaLoader(), TurnQueue())
    events = manager.send(None, "Tell me a story", [], threading.Event())
    saved = next(events)
    next(e for e in events if isinstance(e, ReplyDelta))
    with pytest.raises(ConversationBusy, match="stop the answer first"):
        manager.delete(saved.conversation.id)
    list(events)
    manager.delete(saved.conversation.id)
    assert repository.list_conversations() == []


# --- settings that travel with a conversation, and answer details ------------------------------------------


def test_settings_travel_with_the_conversation_and_every_answer_records_what_made_it(engine, repository):
    from domain.settings import GenerationSettings

    recording = RecordingEngine(engine, max_new_tokens=24)
    manager = DialogueManager(repository, ready_host(recording), MediaLoader(), TurnQueue())
    settings = GenerationSettings(system_prompt="You are a terse pirate.", temperature=0, max_new_tokens=5)
    first = run_with(manager, None, "Ahoy", settings)
    conversation_id = first[0].conversation.id
    assert repository.get_conversation(conversation_id).settings == settings
    prompt = engine.processor.tokenizer.decode(recording.prepared[-1]["input_ids"][0])
    assert prompt.startswith("<|im_start|>system\nYou are a terse pirate.<|im_end|>")
    details = first[-1].message.details
    assert (details.model, details.quant) == (engine.info.model, engine.info.quant)
    assert details.settings == settings and details.finish == "length"
    assert details.answer_tokens == 5 and details.prompt_tokens == recording.prepared[-1]["input_ids"].shape[1]
    assert details.first_token_s > 0 and details.tokens_per_s > 0
    # A follow-up without settings keeps the conversation's own.
    follow = run(manager, conversation_id, "And then?")[-1].message
    assert follow.details.settings == settings and follow.details.answer_tokens == 5
    # Stopped answers say so.
    stop = threading.Event()
    for event in manager.send(conversation_id, "More", [], stop):
        if isinstance(event, ReplyDelta):
            stop.set()
    assert repository.get_messages(conversation_id)[-1].details.finish == "stopped"


def run_with(manager, conversation_id, text, settings):
    return list(manager.send(conversation_id, text, [], threading.Event(), settings))


def test_temperature_zero_is_greedy_and_a_seed_repeats_a_sampled_answer(engine, repository):
    from domain.settings import GenerationSettings

    manager = DialogueManager(repository, ready_host(RecordingEngine(engine, max_new_tokens=12)), MediaLoader(), TurnQueue())
    greedy = answers_to_one_question(manager, GenerationSettings(temperature=0))
    assert len(set(greedy)) == 1
    seeded = answers_to_one_question(manager, GenerationSettings(temperature=1.5, top_p=1.0, seed=7))
    assert len(set(seeded)) == 1
    other_seed = answers_to_one_question(manager, GenerationSettings(temperature=1.5, top_p=1.0, seed=8))
    assert other_seed[0] != seeded[0]


def answers_to_one_question(manager, settings, n=2) -> list[str]:
    """The answers to one question, asked once and regenerated n-1 times, all with `settings`."""
    events = run_with(manager, None, "Say something", settings)
    texts = [events[-1].message.text]
    for _ in range(n - 1):
        texts.append(list(manager.regenerate(events[0].conversation.id, threading.Event()))[-1].message.text)
    return texts


def test_audio_longer_than_the_audio_window_is_heard_in_windows_in_order(engine, repository, tmp_path):
    from tests.media_factory import write_tone

    clip = write_tone(tmp_path / "lecture.wav", 75, rate=16_000)
    recording = RecordingEngine(engine)
    manager = DialogueManager(repository, ready_host(recording), MediaLoader(), TurnQueue())
    events = run(manager, None, "Summarise this", [(clip, "lecture.wav")])
    assert events[-1].message.status is Status.COMPLETE
    [model_input] = recording.inputs
    assert [len(a) / 16_000 for a in model_input.audios] == [30.0, 30.0, 15.0]  # 30 s windows, in order
    assert [item["type"] for item in model_input.conversation[-1]["content"]] == ["audio", "audio", "audio", "text"]
    prepared = recording.prepared[-1]
    assert prepared["input_features"].shape[0] == 3
    assert engine.processor.tokenizer.decode(prepared["input_ids"][0]).count("<|audio_bos|>") == 3
