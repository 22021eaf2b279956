"""The in-process transformers engine, for every model family (assistant/families).

Implements assistant.engine_contract.Engine; `on_finished` runs in the generating thread the moment generation ends,
however slowly the chunks are consumed. Knows nothing of storage, conversations on disk, queueing, or the UI.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import torch
from transformers import BatchFeature, StoppingCriteriaList

from assistant.compiled import CompiledDecode
from assistant.engine_contract import AnswerLength, EngineInfo, GenerationReport
from assistant.families.base import Family
from assistant.incremental import IncrementalProcessor
from assistant.prompt import ModelInput
from assistant.reuse import KVStore, Reuse, budget_bytes, model_fingerprint, supports_reuse
from assistant.streaming import ChunkStreamer, StopOnEvent
from domain.errors import GenerationError
from domain.i18n import t
from domain.limits import DEFAULT_MAX_NEW_TOKENS, DEFAULT_STREAM_TIMEOUT_S
from domain.settings import GenerationSettings

log = logging.getLogger(__name__)

GENERATION_FAILED = t("generation.failed")


def _sounds(model_input: ModelInput) -> dict:
    """Where each video's sound track falls among the prompt's audio, for a family that takes videos."""
    return {"sounds": model_input.sound_order} if model_input.videos else {}


class GenerationThread:
    """One long-lived thread that runs every generation, in turn.

    Not a new thread per answer: on an H200, generate() from a freshly started thread decoded at a third of the
    main thread's speed (bench/decode_overhead.py), and PyTorch is known to warm up per thread. A daemon, so an
    answer in progress never holds up the app's exit. Started on first use.

    `cpu_threads`: its intra-op CPU threads. On a GPU one: decode at batch size 1 is bound by the CPU time of the
    thread that launches the kernels, and a second pool of spinning OpenMP threads competes with it (llama.cpp saw
    7B decode 2.4x faster on an H100 with one CPU thread). Set on this thread, but torch keeps one count for the
    whole process: Gradio's workers, which run the processor's resizing and features, get it too (a cost not yet
    measured on a GPU; setting it back from any thread would change this one's as well).
    """

    def __init__(self, cpu_threads: int | None = None) -> None:
        self._cpu_threads = cpu_threads
        self._jobs: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, function: Callable, *args) -> threading.Event:
        """Queue `function(*args)`; the returned event is set once it has returned (it must catch its own errors)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="generate", daemon=True)
                self._thread.start()
        done = threading.Event()
        self._jobs.put((function, args, done))
        return done

    def _loop(self) -> None:
        if self._cpu_threads is not None:
            torch.set_num_threads(self._cpu_threads)
        while True:
            function, args, done = self._jobs.get()
            try:
                function(*args)
            except BaseException:  # noqa: BLE001 - the job reports its own errors; the thread serves the next one
                log.exception("a generation job failed")
            finally:
                done.set()


class TransformersEngine(AnswerLength):
    voice = None  # the model's own voice, set by the loader when it has one (assistant/omni_talker.py)

    def __init__(
        self,
        model,
        processor,
        info: EngineInfo,
        family: Family,
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        stream_timeout_s: float = DEFAULT_STREAM_TIMEOUT_S,
        generation_kwargs: dict | None = None,
        max_context: int | None = None,
        reuse: Reuse | None = None,
        compile_decode: bool = False,
        kv_cache_gb: float | None = None,
    ):
        """`compile_decode`: decode through torch.compile over static caches (assistant/compiled.py), which take their
        memory from the KV budget: `reuse`'s, else `kv_cache_gb` (see assistant.reuse.budget_bytes)."""
        self.model = model
        self.processor = processor
        self.info = info
        self.family = family
        self.max_new_tokens = max_new_tokens
        self.stream_timeout_s = stream_timeout_s
        self.generation_kwargs = dict(generation_kwargs or {})
        # One generation at a time: the model is shared by every browser session. Released by the generating
        # thread when generate() returns, not when the consumer has read the last chunk.
        self._busy = threading.Lock()
        self._last_processed: tuple[ModelInput, object] | None = None
        self._generator = GenerationThread(cpu_threads=1 if model.device.type == "cuda" else None)
        # Image and audio features go in at the dtype of the model's (unquantized) floating-point weights.
        self.float_dtype = model.dtype
        text_config = model.config.get_text_config()
        context = getattr(text_config, "max_position_embeddings", None) or family.context_tokens
        self.context_tokens = min(context, max_context) if max_context else context  # prompt and answer together
        # Work kept across turns (assistant/reuse.py) where the family's ReuseContract supports this model; None: full prefill.
        self.reuse = reuse if reuse is not None and supports_reuse(family, model) else None
        self._incremental = None
        if self.reuse is not None:
            self.reuse.bind(model_fingerprint(model, info.quant, self.float_dtype), model.device)
            self._incremental = IncrementalProcessor(processor, family)
        self.compiled: CompiledDecode | None = None
        if compile_decode:
            budget = self.reuse.kv if self.reuse is not None else KVStore(budget_bytes(kv_cache_gb, model.device))
            self.compiled = CompiledDecode(model, self.context_tokens, budget)

    def warm_up(self) -> bool:
        """Compile the decode step now, with a short answer on the generation thread by the path answers take, so
        that no answer waits for it; False (logged, and answers are eager) when it cannot be compiled."""
        if self.compiled is None:
            return False
        model_input = ModelInput([{"role": "user", "content": [{"type": "text", "text": "Hello"}]}], [], [])
        inputs = self.prepare(model_input)
        args = {**self._generate_args(inputs, GenerationSettings(temperature=0)), "max_new_tokens": 4, "min_new_tokens": 4}
        reuse = None if self.reuse is None else ("\0warm-up", inputs, model_input)
        compiled: list[bool] = []

        def answer() -> None:
            with torch.inference_mode():
                self._generate(args, GenerationReport(), reuse)

        with self._busy:
            self._generator.submit(lambda: compiled.append(self.compiled.warm_up(answer))).wait()
        if self.reuse is not None:
            self.reuse.forget(reuse[0])
        return bool(compiled and compiled[0])

    def prepare_prompt(self, model_input: ModelInput) -> int:
        """Runs the processor on the prompt (see `run_processor`), whose output the answer to the same input then
        uses, and gives its length in tokens, placeholders for images and audio expanded."""
        return int(self.run_processor(model_input)["input_ids"].shape[1])

    def prepare(self, model_input: ModelInput):
        """The processor's output for this input (see `run_processor`), on the model's device."""
        return self.run_processor(model_input).to(self.model.device)

    def forget(self, conversation_id: str, media: Sequence[str]) -> None:
        """Its KV cache, and the encoder outputs of the media files only it held, go with a deleted conversation."""
        if self.reuse is not None:
            self.reuse.forget(conversation_id, list(media))

    def run_processor(self, model_input: ModelInput):
        """Chat template, placeholder expansion, pixel and audio features, on the CPU; the expensive step before
        generation. The last result is kept: the context budget counts the very input the answer then uses, and
        counting it then answering it processes it once."""
        last = self._last_processed
        if last is not None and last[0] is model_input:
            return last[1]
        if self._incremental is not None:  # earlier media whose encoder outputs are kept are not processed again
            processed = BatchFeature(self._incremental(model_input, self.reuse.encoders.has))
        else:
            text = self.processor.apply_chat_template(model_input.conversation, add_generation_prompt=True, tokenize=False)
            media = self.family.processor_kwargs(
                model_input.images, model_input.audios, model_input.videos, **_sounds(model_input)
            )
            processed = self.processor(text=[text], **media, return_tensors="pt", padding=True)
            if model_input.videos:  # as tensors, like every other input (a 0-d one for a flag)
                processed.update({name: torch.as_tensor(value) for name, value in self.family.video_model_inputs})
        self._last_processed = (model_input, processed)
        return processed

    def _generate_args(self, inputs, settings: GenerationSettings) -> dict:
        args = dict(inputs)
        for key, value in args.items():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                args[key] = value.to(self.float_dtype)  # pixel values, audio features
        sampling = dict(self.generation_kwargs)
        if settings.temperature == 0:
            sampling.update(do_sample=False, temperature=None, top_p=None, top_k=None)  # greedy
        elif settings.temperature is not None or settings.top_p is not None:
            sampling["do_sample"] = True
            if settings.temperature is not None:
                sampling["temperature"] = settings.temperature
            if settings.top_p is not None:
                sampling["top_p"] = settings.top_p
        max_new = self.new_token_limit(settings, int(args["input_ids"].shape[1]))
        return {**args, "max_new_tokens": max_new, **sampling}

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
        """`reuse_key` names the conversation whose cached work this turn may reuse (and keeps it for the next).
        `stop_strings` end the answer where one first appears; the answer ends before it."""
        settings = settings or GenerationSettings()
        report = report if report is not None else GenerationReport()
        self._busy.acquire()
        started = time.monotonic()  # time to first token counts the processor's work too
        try:
            inputs = self.prepare(model_input)
            streamer = ChunkStreamer(self.processor.tokenizer, timeout=self.stream_timeout_s, stop_strings=stop_strings)
            abandoned = threading.Event()
            args = self._generate_args(inputs, settings)
            args["streamer"] = streamer
            args["stopping_criteria"] = StoppingCriteriaList([StopOnEvent(stop, abandoned, streamer.hit_stop_string)])
            report.prompt_tokens = int(inputs["input_ids"].shape[1])
            report.max_new_tokens = args["max_new_tokens"]
            reuse = None
            if self.reuse is not None and reuse_key is not None:
                reuse = (reuse_key, inputs, model_input)
            done = self._generator.submit(self._run, args, streamer, on_finished, settings.seed, report, started, reuse)
        except BaseException:
            self._busy.release()
            if on_finished is not None:
                on_finished()
            raise
        try:
            yield from streamer
        finally:
            abandoned.set()  # the consumer left (Stop, error, closed page): let the worker finish now
            done.wait(timeout=self.stream_timeout_s)

    def _generate(self, args: dict, report: GenerationReport, reuse: tuple | None) -> None:
        if reuse is not None:
            self._generate_reusing(args, report, *reuse)
        else:
            self._decode(args)

    def _decode(self, args: dict, prefilled=None):
        """`generate`, compiled where it can be: (output ids, the static cache it filled, or None when eager)."""
        result = self.compiled.generate(args, prefilled) if self.compiled is not None else None
        if result is not None:
            return result
        cache = {} if prefilled is None else {"past_key_values": prefilled}
        return self.model.generate(**args, **cache), None

    def _generate_reusing(self, args: dict, report: GenerationReport, key: str, inputs, model_input: ModelInput) -> None:
        """Prefill only what the conversation's cache lacks, then generate from it; keep the cache on success."""
        keys = {"image": model_input.image_keys, "video": model_input.video_keys, "audio": model_input.audio_keys}
        cache, blocks = self.reuse.prefill(self.model, self.family, inputs, keys, key, self.float_dtype)
        ids = inputs["input_ids"]
        report.cached_tokens = ids.shape[1] - 1 - self.reuse.prefilled
        # The media are in the cache now; generate takes the whole prompt, of which only the last token is new.
        plain = {k: v for k, v in args.items() if k not in inputs}  # sampling, lengths, streamer, stopping
        plain.update(input_ids=ids, attention_mask=torch.ones_like(ids))
        output, static = self._decode(plain, prefilled=cache)
        self.reuse.keep(key, output[0], cache if static is None else self.compiled.kept(static), blocks)

    def _run(
        self,
        args: dict,
        streamer: ChunkStreamer,
        on_finished: Callable[[], None] | None,
        seed: int | None,
        report: GenerationReport,
        started: float,
        reuse: tuple | None = None,
    ) -> None:
        try:
            if seed is not None:
                torch.manual_seed(seed)  # safe: one generation at a time holds the model
            with torch.inference_mode():
                self._generate(args, report, reuse)
        except torch.OutOfMemoryError:
            log.exception("generation ran out of memory")
            streamer.fail(GenerationError(t("generation.out_of_memory")))
        except Exception:  # reported to the consumer, with the traceback in the log
            log.exception("generation failed")
            streamer.fail(GenerationError(GENERATION_FAILED))
        finally:
            report.answer_tokens = streamer.token_count
            report.seconds = time.monotonic() - started
            if streamer.first_token_at is not None:
                report.first_token_s = streamer.first_token_at - started
                report.last_token_s = streamer.last_token_at - started
            self._busy.release()
            if on_finished is not None:
                on_finished()
