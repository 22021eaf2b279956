"""From `model.generate` in a worker thread to a consumer iterating text chunks, as transformers' streamers do it:
`DecodingStreamer` turns tokens into text (its `on_finalized_text` gets each new piece) and `ChunkStreamer` only
overrides that to queue the pieces for the consumer; `StopOnEvent` ends generation when asked.
"""

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
from domain.i18n import t

_END = object()
# SentencePiece-style byte-fallback tokens (Gemma): a run of them decodes as one UTF-8 sequence, or as one U+FFFD
# per byte when invalid, so the text of a trailing run can still change; held back until another token follows.
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


class DecodingStreamer(BaseStreamer):
    """Hands each new piece of decoded text to `on_finalized_text` as tokens arrive, never half a UTF-8 character,
    and nothing from the first stop string on; times the tokens.

    Byte-level tokens can end inside a multi-byte character; the decoder then ends in U+FFFD, and
    that tail is held back until the next token completes it (or generation ends). So is a trailing run
    of byte-fallback tokens. What is handed on is always a prefix of the final decoded text.

    Each token costs a decode of a few tokens, not of the whole answer (`put` runs in the generating thread, so a
    decode of everything so far would slow every later token): the new text is what the tokens since the last
    settled point add to the decode of the token before it, which keeps a leading space or a cleaned-up one right.
    """

    def __init__(self, tokenizer, stop_strings: tuple[str, ...] = ()):
        self._tokenizer = tokenizer
        # Text that ends the answer (the API's `stop`): never emitted itself, and nothing after it either.
        self._stop_strings = tuple(s for s in stop_strings if s)
        self.hit_stop_string = threading.Event()
        self._ids: list[int] = []
        self._text = ""  # the decoded text of self._ids[:self._read]
        self._prefix = 0  # where the decode that gives the next piece starts: one settled token back
        self._read = 0  # the ids up to here are in self._text
        self._emitted = 0
        self._prompt_seen = False
        self.first_token_at: float | None = None  # time.monotonic() of the first new token
        self.last_token_at: float | None = None  # … and of the latest
        # An id past the vocabulary (a padded embedding row) decodes to nothing, and a byte-fallback decoder then joins
        # the byte tokens on either side of it: it is held back like one, or an emitted "W" could become U+FFFD.
        self._is_byte = lru_cache(maxsize=None)(
            lambda token_id: _BYTE_TOKEN.fullmatch(tokenizer.convert_ids_to_tokens(token_id) or "<0x00>") is not None
        )

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        """Called with each new, non-empty piece of text, then once with `stream_end` (and no text) at the end."""
        raise NotImplementedError

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
        while settled > self._read and self._is_byte(self._ids[settled - 1]):
            settled -= 1
        if settled == self._read:
            return
        piece = self._piece(settled, final=False)
        if piece is not None:
            self._text += piece
            self._prefix, self._read = self._read, settled
            self._emit_until_stop(self._text, final=False)

    def _piece(self, upto: int, final: bool) -> str | None:
        """The text self._ids[self._read:upto] adds; unless `final`, None while it ends inside a character."""
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix : upto])
        if not final and (after.endswith("\ufffd") or not after.startswith(before)):
            return None
        return after[len(before) :]

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=True) if ids else ""

    def end(self) -> None:
        if not self.hit_stop_string.is_set():
            whole = self._decode(self._ids)  # once: the answer's text as a whole decode gives it
            if not whole.startswith(self._text):  # never seen; keep what was streamed and add the rest
                whole = self._text + self._piece(len(self._ids), final=True)
            self._emit_until_stop(whole, final=True)
        self.on_finalized_text("", stream_end=True)

    def _emit_until_stop(self, text: str, final: bool) -> None:
        """Emit up to the first stop string (and end there); hold back a tail that may be the start of one."""
        if self._stop_strings:
            # Only where a stop string could begin that was not there before: the text held back, and a little earlier.
            start = max(0, self._emitted - max(map(len, self._stop_strings)))
            found = [i for i in (text.find(s, start) for s in self._stop_strings) if i >= 0]
            if found:
                self._emit(text[: max(min(found), self._emitted)])
                self.hit_stop_string.set()
                return
            if not final:
                text = text[: len(text) - _partial_stop(text, self._stop_strings)]
        self._emit(text)

    def _emit(self, text: str) -> None:
        if len(text) > self._emitted:
            self.on_finalized_text(text[self._emitted :])
            self._emitted = len(text)


class ChunkStreamer(DecodingStreamer):
    """The decoded pieces, queued from the generating thread for a consumer that iterates them; an error handed to
    `fail` is raised there, and so is a silence longer than `timeout` (a dead generation never hangs the page)."""

    def __init__(self, tokenizer, timeout: float, stop_strings: tuple[str, ...] = ()):
        super().__init__(tokenizer, stop_strings)
        self._timeout = timeout
        self._queue: queue.Queue = queue.Queue()

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if text:
            self._queue.put(text)
        if stream_end:
            self._queue.put(_END)

    def fail(self, error: BaseException) -> None:
        self._queue.put(error)

    def __iter__(self):
        while True:
            try:
                item = self._queue.get(timeout=self._timeout)
            except queue.Empty:
                raise GenerationError(t("generation.silent", seconds=self._timeout)) from None
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
