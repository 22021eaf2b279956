"""The contract every engine implements (in-process transformers, a remote OpenAI-compatible server), and the
answer-length rules they share. Imports nothing heavy (no torch, no transformers, no HTTP client): the dialogue
manager, the model host and the remote engine know engines only through this module.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from assistant.families.capabilities import Capabilities
    from assistant.prompt import ModelInput
    from domain.settings import GenerationSettings
    from domain.i18n import Text


@dataclass(frozen=True)
class EngineInfo:
    model: str
    quant: str
    device: str
    voice_note: Text | str = ""  # how answers are spoken, when the page should know (its own voice, or why not)
    # The model's name as the page's status line says it, where it is a sentence (a demo's); None: `model`, which
    # stays the English name that answers' details, exports and the API keep.
    shown_name: Text | None = None


@dataclass
class GenerationReport:
    """Filled in by `stream` as it goes: sizes and timings of one answer."""

    prompt_tokens: int = 0
    cached_tokens: int = 0  # of the prompt, those a kept KV cache held (not prefilled again)
    answer_tokens: int = 0
    max_new_tokens: int = 0
    first_token_s: float | None = None
    seconds: float | None = None
    last_token_s: float | None = None  # when the last token came (seconds may include work after it)

    @property
    def tokens_per_s(self) -> float | None:
        """Decode speed: the tokens after the first over the time from the first to the last."""
        end = self.last_token_s if self.last_token_s is not None else self.seconds
        if not end or self.first_token_s is None or self.answer_tokens < 2:
            return None
        return (self.answer_tokens - 1) / max(end - self.first_token_s, 1e-9)

    @property
    def hit_length_limit(self) -> bool:
        return self.answer_tokens >= self.max_new_tokens > 0


@runtime_checkable
class Engine(Protocol):
    """What the dialogue manager, the model host and the API use of an engine, and nothing more."""

    info: EngineInfo  # what the page and each answer's details name
    family: Capabilities  # what the model accepts (in process, the whole Family, which is one); only that is used
    context_tokens: int  # prompt and answer together
    voice: object | None  # the model's own voice (assistant.speech.SpeechEngine: a talker), or None

    def answer_budget(self, settings: GenerationSettings) -> int:
        """The tokens kept free for the answer when the prompt is fitted into the context."""
        ...

    def prepare_prompt(self, model_input: ModelInput) -> int:
        """Get the prompt ready for `stream` and say its length in tokens: in process, the processor runs and its
        output is kept for a `stream` of the same `model_input` (so prepare just before streaming); a remote engine
        has nothing to prepare and estimates the length (the server's tokenizer is not at hand)."""
        ...

    def stream(
        self,
        model_input: ModelInput,
        stop: threading.Event,
        on_finished: Callable[[], None] | None = None,
        settings: GenerationSettings | None = None,
        report: GenerationReport | None = None,
        reuse_key: str | None = None,
        stop_strings: tuple[str, ...] = (),
    ) -> Iterator[str]:
        """The answer's text chunks, ending early once `stop` is set. `on_finished` runs once generation has ended
        (however slowly the chunks are read); `report` is filled in by then. `reuse_key` names the conversation whose
        kept work this turn may reuse; `stop_strings` end the answer before the first that appears."""
        ...

    def forget(self, conversation_id: str, media: Sequence[str]) -> None:
        """Drop the work kept for a deleted conversation, and for the media files (sha256) that went with it."""
        ...


class AnswerLength:
    """The answer-length rules both engines share; the engine sets `max_new_tokens` and `context_tokens`."""

    max_new_tokens: int  # the default answer length, when the settings ask none
    context_tokens: int

    def answer_budget(self, settings: GenerationSettings) -> int:
        """The tokens kept free for the answer: as asked, but at most half the context."""
        return min(settings.max_new_tokens or self.max_new_tokens, self.context_tokens // 2)

    def new_token_limit(self, settings: GenerationSettings, prompt_tokens: int) -> int:
        """The most tokens this answer may have: as asked, and never past the context (at least one)."""
        # What the prompt leaves of the context bounds the answer; assistant.budget keeps room for it.
        room = self.context_tokens - prompt_tokens
        return max(1, min(settings.max_new_tokens or self.max_new_tokens, room))
