"""How the models load: fetch a checkpoint, pick its model family from its config, and load it into a
TransformersEngine, quantized as asked; the loaders the ModelHost calls (a checkpoint, a demo built on first start, or
a remote server), and the Whisper worker for transcripts. Knows the model folders under the data dir, not the
command line. Nothing heavy at import: torch and transformers load when a model does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from domain.errors import ModelLoadError
from domain.i18n import Text, t

if TYPE_CHECKING:
    from assistant.engine import TransformersEngine
    from assistant.families.base import Family
    from assistant.transcribe import Transcriber

log = logging.getLogger(__name__)

DEFAULT_MODEL = "Qwen/Qwen2.5-Omni-7B"
ENCODER_CACHE = Path("cache") / "encoders"  # under the data dir: image and audio encoder outputs, per model

Progress = Callable[[Text | str, float | None], None]


class Quant(StrEnum):
    AUTO = "auto"
    NF4 = "4bit"
    INT8 = "8bit"
    NONE = "none"


@dataclass(frozen=True)
class ModelSpec:
    source: str
    quant: Quant = Quant.AUTO
    demo: bool = False
    compile: bool | None = None  # compiled decode (assistant/compiled.py); None: on a GPU
    speech: str = "off"  # --speech: "on" loads a model's own voice (a talker) where it has one, "auto" on a GPU or the demo


def speaks_itself(speech: str, cuda: bool, demo: bool) -> bool:
    """Whether a model with a voice of its own is loaded with it: its talker needs a GPU to keep pace (the demo's is tiny)."""
    return speech == "on" or (speech == "auto" and (cuda or demo))


def resolve_quant(quant: Quant, cuda: bool) -> Quant:
    if quant is Quant.AUTO:
        return Quant.NF4 if cuda else Quant.NONE
    return quant


def quantization_config(quant: Quant, unquantized: tuple[str, ...], compute_dtype=None):
    """transformers 5.x matches `unquantized` by module path; the list replaces the defaults (so it names lm_head).
    4-bit layers compute in `compute_dtype` (default bfloat16, a GPU's; the CPU loads float32 models and gives
    float32, as bf16 GEMMs on a CPU without bf16 units are emulated and round differently with the row count)."""
    import torch
    from transformers import BitsAndBytesConfig

    if quant is Quant.NF4:
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=compute_dtype or torch.bfloat16,
            bnb_4bit_use_double_quant=True,
            llm_int8_skip_modules=list(unquantized),
        )
    if quant is Quant.INT8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=list(unquantized))
    return None


def cannot_fetch(source: str, reason: Text) -> ModelLoadError:
    return ModelLoadError(t("model.cannot_load", source=source, reason=reason))


def fetch(source: str, progress: Progress) -> Path:
    """A local directory as is; otherwise download the Hugging Face repo (or find it in the cache)."""
    local = Path(source).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise cannot_fetch(source, t("model.reason.no_config"))
        return local
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    progress(t("progress.downloading_model", source=source), 0.0)
    try:
        return Path(snapshot_download(source, tqdm_class=_file_progress(source, progress)))
    except HFValidationError:
        raise cannot_fetch(source, t("model.reason.no_such_source")) from None
    except OSError as error:  # LocalEntryNotFoundError, RepositoryNotFoundError, HTTP errors are all OSErrors
        log.debug("download failed", exc_info=True)
        raise cannot_fetch(source, _reason(error)) from None


def _reason(error: OSError) -> Text:
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    if isinstance(error, LocalEntryNotFoundError):
        return t("model.reason.offline")
    if isinstance(error, GatedRepoError):
        return t("model.reason.gated")
    if isinstance(error, RepositoryNotFoundError):
        return t("model.reason.not_on_hub")
    log.warning("downloading the model failed: %s", error)
    return t("model.reason.download_failed")


def _file_progress(source: str, progress: Progress):
    from tqdm.auto import tqdm

    class FileProgress(tqdm):
        def update(self, n=1):
            result = super().update(n)
            if self.total:
                progress(t("progress.downloading_files", source=source, done=self.n, total=self.total), self.n / self.total)
            return result

    return FileProgress


def load_engine(spec: ModelSpec, progress: Progress, **engine_kwargs) -> TransformersEngine:
    import torch
    import transformers

    from assistant.engine import TransformersEngine
    from assistant.engine_contract import EngineInfo
    from assistant.families import family_of_checkpoint

    path = fetch(spec.source, progress)
    family = family_of_checkpoint(path)
    cuda = torch.cuda.is_available()
    quant = resolve_quant(spec.quant, cuda)
    device = torch.cuda.get_device_name(0) if cuda else "CPU"
    progress(t("progress.loading_model", source=spec.source, family=family.title, quant=quant.value, device=device), None)
    dtype = torch.bfloat16 if cuda else torch.float32
    placement = {"dtype": dtype, "device_map": "auto" if cuda else "cpu"}
    voice, voice_note = None, ""
    try:
        processor = getattr(transformers, family.processor_class).from_pretrained(path)
        model = None
        if family.own_voice is not None and speaks_itself(spec.speech, cuda, spec.demo):
            if spec.speech == "auto" and cuda and not voice_fits(path, quant):
                voice_note = t("voice_note.no_free_memory")
            else:
                model, voice, voice_note = _with_own_voice(family, path, processor, quant, placement, progress)
        if model is None:
            model = getattr(transformers, family.model_class).from_pretrained(
                path, quantization_config=quantization_config(quant, family.unquantized, dtype), **placement
            )
    except torch.OutOfMemoryError:
        log.warning("loading %s ran out of memory", spec.source, exc_info=True)
        raise ModelLoadError(t("model.out_of_memory", source=spec.source)) from None
    except Exception:  # noqa: BLE001 - safetensors, pickle, shape and config errors alike: the files are at fault
        log.warning("loading %s failed", spec.source, exc_info=True)
        raise cannot_fetch(spec.source, t("model.reason.damaged")) from None
    model.eval()
    shown_name = t("model.demo_name", family=family.title) if spec.demo else None
    name = str(shown_name) if shown_name is not None else spec.source
    info = EngineInfo(model=name, quant=quant.value, device=device, voice_note=voice_note, shown_name=shown_name)
    compile_decode = cuda if spec.compile is None else spec.compile
    engine = TransformersEngine(model, processor, info, family, compile_decode=compile_decode, **engine_kwargs)
    engine.voice = voice
    if engine.compiled is not None and engine.compiled.enabled:
        progress(t("progress.compiling"), None)
        engine.warm_up()
    return engine


# What a loaded model needs beside its weights (KV caches, activations) before its voice is loaded too with --speech auto.
VOICE_HEADROOM_BYTES = 2 * 2**30
# Bytes per weight as loaded: nf4 with its block scales, int8; the voice's parts are kept unquantized.
_QUANT_BYTES = {"4bit": 0.57, "8bit": 1.0, "none": 2.0}


def voice_fits(path: Path, quant: Quant) -> bool:
    """Whether the GPU's free memory holds the whole model with its voice (talker bf16, token2wav fp32), counted from
    the checkpoint's tensor shapes (headers only), plus VOICE_HEADROOM_BYTES."""
    import math

    import torch
    from safetensors import safe_open

    needed = VOICE_HEADROOM_BYTES
    for file in path.glob("*.safetensors"):
        with safe_open(str(file), "pt") as tensors:
            for name in tensors.keys():
                count = math.prod(tensors.get_slice(name).get_shape())
                if name.startswith("token2wav."):
                    needed += count * 4
                elif name.startswith("talker."):
                    needed += count * 2
                else:
                    needed += count * _QUANT_BYTES[quant.value]
    free, _ = torch.cuda.mem_get_info()
    log.info("the model with its own voice needs about %.1f GiB; %.1f GiB are free", needed / 2**30, free / 2**30)
    return needed <= free


def _with_own_voice(family: Family, path: Path, processor, quant: Quant, placement: dict, progress: Progress):
    """(the model that writes, its voice, a note for the page), the whole model loaded; (None, None, why not) when its
    voice cannot be had (no speakers file, no memory for it), so that the text model alone is loaded instead."""
    import torch
    import transformers

    progress(t("progress.loading_own_voice", family=family.title), None)
    failed = None
    try:
        whole = getattr(transformers, family.speech_model_class).from_pretrained(
            path, quantization_config=quantization_config(quant, family.speech_unquantized, placement["dtype"]), **placement
        )
        model, voice = family.own_voice(whole, processor)
    except torch.OutOfMemoryError:
        log.warning("no memory for %s's own voice", family.title, exc_info=True)
        failed = t("voice_note.no_memory")
    except Exception:  # noqa: BLE001 - a checkpoint without its talker or speakers: the text model still loads
        log.warning("%s's own voice could not be loaded", family.title, exc_info=True)
        failed = t("voice_note.failed")
    if failed is not None:  # out of the except block, whose traceback held the half-loaded model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return None, None, failed
    model.eval()
    return model, voice, t("voice_note.own", label=voice.label)


@dataclass(frozen=True)
class ModelChoice:
    """The model the options ask for: its family when known before loading (the page then offers only what it takes;
    None for a Hugging Face id, whose config arrives with the download), whether it is a demo, and what the
    ModelHost calls to load it."""

    family: Family | None
    demo: bool
    load: Callable[[Progress], object]


def local_model(
    source: str,
    quant: Quant,
    data_dir: Path,
    *,
    demo_family: str | None = None,
    reuse: bool = True,
    kv_cache_gb: float | None = None,
    max_new_tokens: int | None = None,
    max_context: int | None = None,
    compile_decode: bool | None = None,
    speech: str = "off",
) -> ModelChoice:
    """A checkpoint (folder or Hugging Face id) loaded in this process, or with `demo_family` that family's tiny demo,
    built under `data_dir` on first start. ModelLoadError when a demo name or a local folder names no family.
    `compile_decode`: see ModelSpec.compile."""
    from assistant.demo_model import ensure_demo_model
    from assistant.families.demo_marker import is_demo_checkpoint
    from assistant.families import family_named, family_of_checkpoint

    folder = Path(source).expanduser()
    demo = demo_family is not None or is_demo_checkpoint(folder)
    try:
        family = family_named(demo_family) if demo_family else family_of_checkpoint(folder)
    except ModelLoadError:
        if demo_family or folder.is_dir():
            raise
        family = None  # a Hugging Face id: its config arrives with the download
    engine_kwargs = {
        "max_new_tokens": _max_new_tokens(max_new_tokens, demo), "max_context": max_context, "kv_cache_gb": kv_cache_gb
    }

    def load(progress: Progress) -> TransformersEngine:
        checkpoint = source
        if demo_family:
            progress(t("progress.building_demo"), None)
            checkpoint = str(ensure_demo_model(data_dir / "models" / f"demo-{demo_family}", demo_family))
        from assistant.reuse import Reuse

        kept = Reuse(kv_cache_gb, data_dir / ENCODER_CACHE) if reuse else None
        spec = ModelSpec(checkpoint, quant, demo=demo, compile=compile_decode, speech=speech)
        return load_engine(spec, progress, reuse=kept, **engine_kwargs)

    return ModelChoice(family, demo, load)


def remote_model(
    url: str,
    model: str,
    *,
    accepts=None,
    api_key: str | None = None,
    audio_part: str = "input_audio",
    max_new_tokens: int | None = None,
    max_context: int | None = None,
) -> ModelChoice:
    """`model` as served by the OpenAI-compatible server at `url`; `accepts` (media kinds besides text) overrides what
    its name tells."""
    from assistant.remote_engine import family_for_model

    family = family_for_model(model, accepts)
    limit = _max_new_tokens(max_new_tokens, demo=False)

    def load(progress: Progress):
        from assistant.remote_engine import OpenAIEngine

        progress(t("progress.connecting", url=url), None)
        return OpenAIEngine(
            url, model, family, api_key=api_key, audio_part=audio_part, max_new_tokens=limit, max_context=max_context
        )

    return ModelChoice(family, False, load)


def _max_new_tokens(asked: int | None, demo: bool) -> int:
    """What was asked, else a demo's short default (its answers are meaningless), else the engines' default."""
    from domain.limits import DEFAULT_MAX_NEW_TOKENS, DEMO_MAX_NEW_TOKENS

    return asked or (DEMO_MAX_NEW_TOKENS if demo else DEFAULT_MAX_NEW_TOKENS)


def make_transcriber(source: str | None, demo: bool, data_dir: Path, store, media) -> Transcriber | None:
    """The Whisper worker the options ask for (started), or None when transcripts are off; `store` keeps the
    transcripts (storage.transcripts.TranscriptRepository), `media` decodes audio (assistant.media.MediaLoader)."""
    from assistant.transcribe import OFF, Transcriber, default_whisper_model, load_whisper

    if source == OFF:
        return None
    import torch

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    if source is None and demo:
        from assistant.demo_whisper import DEMO_WHISPER_NAME, DEMO_WHISPER_OPTIONS, ensure_demo_whisper

        path = data_dir / "models" / "whisper-demo.pt"
        return Transcriber(
            store,
            media,
            lambda progress: load_whisper(str(ensure_demo_whisper(path)), path.parent, device, progress),
            DEMO_WHISPER_NAME,
            options=DEMO_WHISPER_OPTIONS,
        ).start()
    name = source or default_whisper_model(cuda)
    root = data_dir / "models" / "whisper"
    return Transcriber(store, media, lambda progress: load_whisper(name, root, device, progress), f"Whisper {name}", fp16=cuda).start()


def make_speech(option: str, demo: bool, data_dir: Path, host=None):
    """The voice answers are spoken with (assistant.speech.SpeechEngine), or None when `--speech off`: with `host`
    (assistant.model_host.ModelHost), the model's own once it is loaded with one, else Piper's."""
    if option == "off":
        return None
    from assistant.piper_speech import PUBLISHED_VOICES, PiperSpeech, fetch_voice

    folder = data_dir / "models" / "voices"
    if demo:
        from assistant.demo_voice import DEMO_VOICES, ensure_demo_voice

        piper = PiperSpeech(DEMO_VOICES, lambda code, progress: ensure_demo_voice(code, folder))
    else:
        piper = PiperSpeech(PUBLISHED_VOICES, lambda code, progress: fetch_voice(code, folder, progress))
    if host is None:
        return piper
    from assistant.speech import ModelVoice

    return ModelVoice(host, piper)
