"""Bridge from `model.generate` in a worker thread to a consumer iterating text chunks."""

from __future__ import annotations

import queue
import re
import threading
import time
from functools import lru_cache

import torch
from transformers import StoppingCriteria
from transformers.generation.streamers import BaseStreamer

from domain.errors import GenerationError

_END = object()
# SentencePiece-style byte-fallback tokens (Gemma): a run of them decodes as one UTF-8 sequence, or as one U+FFFD
# per byte when invalid, so the text of a trailing run can still change; held back until another token follows.
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


class ChunkStreamer(BaseStreamer):
    """Yields each new piece of decoded text as tokens arrive, never half a UTF-8 character.

    Byte-level tokens can end inside a multi-byte character; the decoder then ends in U+FFFD, and
    that tail is held back until the next token completes it (or generation ends). So is a trailing run
    of byte-fallback tokens. What is emitted is always a prefix of the final decoded text.
    """

    def __init__(self, tokenizer, timeout: float, stop_strings: tuple[str, ...] = ()):
        self._tokenizer = tokenizer
        # Text that ends the answer (the API's `stop`): never emitted itself, and nothing after it either.
        self._stop_strings = tuple(s for s in stop_strings if s)
        self.hit_stop_string = threading.Event()
        self._timeout = timeout
        self._queue: queue.Queue = queue.Queue()
        self._ids: list[int] = []
        self._emitted = 0
        self._prompt_seen = False
        self.first_token_at: float | None = None  # time.monotonic() of the first new token
        self.last_token_at: float | None = None  # … and of the latest
        self._is_byte = lru_cache(maxsize=None)(
            lambda token_id: bool(_BYTE_TOKEN.fullmatch(tokenizer.convert_ids_to_tokens(token_id) or ""))
        )

    @property
    def token_count(self) -> int:
        return len(self._ids)

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # generate() first hands over the prompt
            self._prompt_seen = True
            return
        if self.hit_stop_string.is_set():  # generate() may hand over one more token before it stops
            return
        self.last_token_at = time.monotonic()
        if self.first_token_at is None:
            self.first_token_at = self.last_token_at
        self._ids.extend(value.reshape(-1).tolist())
        settled = len(self._ids)
        while settled and self._is_byte(self._ids[settled - 1]):
            settled -= 1
        text = self._tokenizer.decode(self._ids[:settled], skip_special_tokens=True)
        if not text.endswith("\ufffd"):
            self._emit_until_stop(text, final=False)

    def end(self) -> None:
        if not self.hit_stop_string.is_set():
            self._emit_until_stop(self._tokenizer.decode(self._ids, skip_special_tokens=True), final=True)
        self._queue.put(_END)

    def _emit_until_stop(self, text: str, final: bool) -> None:
        """Emit up to the first stop string (and end there); hold back a tail that may be the start of one."""
        if self._stop_strings:
            found = [i for i in (text.find(s) for s in self._stop_strings) if i >= 0]
            if found:
                self._emit(text[: max(min(found), self._emitted)])
                self.hit_stop_string.set()
                return
            if not final:
                text = text[: len(text) - _partial_stop(text, self._stop_strings)]
        self._emit(text)

    def fail(self, error: BaseException) -> None:
        self._queue.put(error)

    def _emit(self, text: str) -> None:
        if len(text) > self._emitted:
            self._queue.put(text[self._emitted :])
            self._emitted = len(text)

    def __iter__(self):
        while True:
            try:
                item = self._queue.get(timeout=self._timeout)
            except queue.Empty:
                raise GenerationError(
                    f"The model produced nothing for {self._timeout:.0f} seconds, so the answer was abandoned."
                ) from None
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


def _partial_stop(text: str, stops: tuple[str, ...]) -> int:
    """The length of the longest end of `text` that begins one of `stops`."""
    return max((k for s in stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)


class StopOnEvent(StoppingCriteria):
    """Ends generation after the current token once any of the events is set."""

    def __init__(self, *events: threading.Event):
        self._events = events

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        stop = any(event.is_set() for event in self._events)
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)
