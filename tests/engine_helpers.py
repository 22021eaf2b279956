"""Helpers around the real engine, shared by the test modules: greedy settings, the reference answer, a dialogue
manager over a loaded engine (or an OpenAI-compatible server), an engine that records its inputs (or fails), and the
scripted conversation the reuse tests compare. Apart from tests/helpers.py because it imports torch (through the engine)."""

from __future__ import annotations

import threading

from assistant.dialogue import DialogueManager
from assistant.engine import TransformersEngine
from assistant.model_host import ModelHost, Phase
from assistant.remote_engine import OpenAIEngine, family_for_model
from assistant.reuse import Reuse
from domain.types import MediaKind, Status

GREEDY = {"do_sample": False}


def generate_whole(engine, model_input) -> str:
    """The reference answer: the same inputs through transformers' own generate(), no streamer, no threads."""
    import torch

    with torch.inference_mode():
        inputs = engine.prepare(model_input)
        args = dict(inputs)
        for key, value in args.items():
            if value.is_floating_point():
                args[key] = value.to(engine.float_dtype)
        output = engine.model.generate(**args, max_new_tokens=engine.max_new_tokens, **engine.generation_kwargs)
    return engine.processor.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def make_manager(engine, repository, transcriber=None, speech=None):
    """A DialogueManager over `engine` (already loaded) and `repository`, as run.py wires it."""
    from assistant.media import MediaLoader
    from assistant.turn_queue import TurnQueue

    host = ModelHost(lambda progress: engine).start()
    assert host.wait(30)
    return DialogueManager(repository, host, MediaLoader(), TurnQueue(), transcriber=transcriber, speech=speech)


def remote_manager(url: str, repository, model: str = "demo", accepts=frozenset({MediaKind.IMAGE, MediaKind.AUDIO}), **engine_kwargs):
    family = family_for_model(model, accepts)
    engine = OpenAIEngine(url, model, family, **engine_kwargs)
    manager = make_manager(engine, repository)
    return manager, engine


def ready_host(engine) -> ModelHost:
    host = ModelHost(lambda progress: engine).start()
    assert host.wait(10) and host.state.phase is Phase.READY
    return host


class RecordingEngine(TransformersEngine):
    """The real engine, also keeping what each turn fed the processor and what came out of it."""

    def __init__(self, inner: TransformersEngine, max_new_tokens: int = 24):
        super().__init__(
            inner.model, inner.processor, inner.info, inner.family, max_new_tokens=max_new_tokens, generation_kwargs=GREEDY
        )
        self.inputs = []
        self.prepared = []

    def prepare(self, model_input):
        self.inputs.append(model_input)
        prepared = super().prepare(model_input)
        self.prepared.append(prepared)
        return prepared


class FailingEngine(RecordingEngine):
    """The real engine with a bug planted in it: an exception that is not an AssistantError."""

    def prepare(self, model_input):
        raise RuntimeError("planted bug")


# --- reuse across turns: one scripted conversation, run with and without reuse ------------------------------------

TURNS = 10


def with_reuse(engine, reuse: Reuse | None, compile_decode: bool = False) -> TransformersEngine:
    return TransformersEngine(
        engine.model, engine.processor, engine.info, engine.family, max_new_tokens=12, generation_kwargs=GREEDY, reuse=reuse,
        compile_decode=compile_decode,
    )


def script(manager: DialogueManager, media) -> list[str]:
    """Ten turns in each of two interleaved conversations (image on 1, audio on 3, image on 6, and where `media` has
    a video, the video on 2 in the first and on 8 in the second), then an edit of turn 2 in the first, which sends
    the conversation down another branch. Returns every answer, in order."""
    answers, conversations = [], {"first": None, "second": None}
    pictures = {"first": ("red", "blue"), "second": ("blue", "red")}
    video_turns = {"first": 2, "second": 8}
    for turn in range(1, TURNS + 1):
        for name in conversations:
            uploads = []
            if turn in (1, 6) and manager.host.family.sees():
                picture = pictures[name][0 if turn == 1 else 1]
                uploads = [(media[picture], f"{picture}.png")]
            elif turn == 3 and manager.host.family.hears():
                uploads = [(media["speech"], "question.wav")]
            elif turn == video_turns[name] and "video" in media and manager.host.family.watches():
                uploads = [(media["video"], "clip.mp4")]
            events = list(manager.send(conversations[name], f"{name} turn {turn}: and then?", uploads, threading.Event()))
            conversations[name] = events[0].conversation.id
            assert events[-1].message.status is Status.COMPLETE, events[-1].message.error
            answers.append(events[-1].message.text)
    second_question = manager.open_messages(conversations["first"])[2]
    events = list(manager.edit(second_question.id, "an edited second question", threading.Event()))
    answers.append(events[-1].message.text)
    events = list(manager.send(conversations["first"], "after the edit", [], threading.Event()))
    answers.append(events[-1].message.text)
    return answers
