"""The in-process transformers engine for Qwen2.5-Omni Thinker models.

Contract: `stream(model_input, stop, on_finished)` yields text chunks and ends early once `stop` is set;
`on_finished` runs in the generating thread the moment generation ends, however slowly the chunks are
consumed. Knows nothing of storage, conversations on disk, queueing, or the UI.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from transformers import StoppingCriteriaList

from domain.errors import GenerationError
from assistant.prompt import ModelInput
from assistant.streaming import ChunkStreamer, StopOnEvent

log = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 1024
DEFAULT_STREAM_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class EngineInfo:
    model: str
    quant: str
    device: str


class TransformersEngine:
    def __init__(
        self,
        model,
        processor,
        info: EngineInfo,
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        stream_timeout_s: float = DEFAULT_STREAM_TIMEOUT_S,
        generation_kwargs: dict | None = None,
    ):
        self.model = model
        self.processor = processor
        self.info = info
        self.max_new_tokens = max_new_tokens
        self.stream_timeout_s = stream_timeout_s
        self.generation_kwargs = dict(generation_kwargs or {})
        # One generation at a time: the model is shared by every browser session. Released by the generating
        # thread when generate() returns, not when the consumer has read the last chunk.
        self._busy = threading.Lock()
        self._float_dtype = next(model.model.visual.parameters()).dtype

    def prepare(self, model_input: ModelInput):
        """Run the processor: chat template, placeholder expansion, pixel and audio features."""
        text = self.processor.apply_chat_template(model_input.conversation, add_generation_prompt=True, tokenize=False)
        inputs = self.processor(
            text=[text],
            images=model_input.images or None,
            audio=model_input.audios or None,
            return_tensors="pt",
            padding=True,
        )
        return inputs.to(self.model.device)

    def _generate_args(self, inputs) -> dict:
        args = dict(inputs)
        for key in ("pixel_values", "input_features"):
            if key in args:
                args[key] = args[key].to(self._float_dtype)
        return {**args, "max_new_tokens": self.max_new_tokens, **self.generation_kwargs}

    def stream(
        self, model_input: ModelInput, stop: threading.Event, on_finished: Callable[[], None] | None = None
    ) -> Iterator[str]:
        self._busy.acquire()
        try:
            inputs = self.prepare(model_input)
            streamer = ChunkStreamer(self.processor.tokenizer, timeout=self.stream_timeout_s)
            abandoned = threading.Event()
            args = self._generate_args(inputs)
            args["streamer"] = streamer
            args["stopping_criteria"] = StoppingCriteriaList([StopOnEvent(stop, abandoned)])
            worker = threading.Thread(target=self._run, args=(args, streamer, on_finished), name="generate", daemon=True)
            worker.start()
        except BaseException:
            self._busy.release()
            if on_finished is not None:
                on_finished()
            raise
        try:
            yield from streamer
        finally:
            abandoned.set()  # the consumer left (Stop, error, closed page): let the worker finish now
            worker.join(timeout=self.stream_timeout_s)

    def _run(self, args: dict, streamer: ChunkStreamer, on_finished: Callable[[], None] | None) -> None:
        try:
            with torch.inference_mode():
                self.model.generate(**args)
        except torch.OutOfMemoryError:
            log.exception("generation ran out of memory")
            streamer.fail(GenerationError("The device ran out of memory while answering; try a shorter conversation or fewer/smaller files."))
        except Exception as error:  # reported to the consumer, with the traceback in the log
            log.exception("generation failed")
            streamer.fail(GenerationError(f"The model failed while answering: {type(error).__name__}: {error}"))
        finally:
            self._busy.release()
            if on_finished is not None:
                on_finished()
