"""Fetch a checkpoint, pick its model family from its config, and load it into a TransformersEngine, quantized as asked."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from domain.errors import ModelLoadError

if TYPE_CHECKING:
    from assistant.engine import TransformersEngine

log = logging.getLogger(__name__)

DEFAULT_MODEL = "Qwen/Qwen2.5-Omni-7B"

Progress = Callable[[str, float | None], None]


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


def resolve_quant(quant: Quant, cuda: bool) -> Quant:
    if quant is Quant.AUTO:
        return Quant.NF4 if cuda else Quant.NONE
    return quant


def quantization_config(quant: Quant, unquantized: tuple[str, ...]):
    """transformers 5.x matches `unquantized` by module path; the list replaces the defaults (so it names lm_head)."""
    import torch
    from transformers import BitsAndBytesConfig

    if quant is Quant.NF4:
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True,
            llm_int8_skip_modules=list(unquantized),
        )
    if quant is Quant.INT8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=list(unquantized))
    return None


def cannot_fetch(source: str, reason: str) -> ModelLoadError:
    return ModelLoadError(
        f"Could not load the model “{source}” ({reason}). "
        "Start with --demo to try the app with its built-in test model, or --model PATH for a checkpoint on disk."
    )


def fetch(source: str, progress: Progress) -> Path:
    """A local directory as is; otherwise download the Hugging Face repo (or find it in the cache)."""
    local = Path(source).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise cannot_fetch(source, "that folder has no config.json")
        return local
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    progress(f"Downloading {source} (first start only)…", 0.0)
    try:
        return Path(snapshot_download(source, tqdm_class=_file_progress(source, progress)))
    except HFValidationError:
        raise cannot_fetch(source, "not a folder on disk nor a valid Hugging Face model id") from None
    except OSError as error:  # LocalEntryNotFoundError, RepositoryNotFoundError, HTTP errors are all OSErrors
        log.debug("download failed", exc_info=True)
        raise cannot_fetch(source, _reason(error)) from None


def _reason(error: OSError) -> str:
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    if isinstance(error, LocalEntryNotFoundError):
        return "no network connection and not in the local cache"
    if isinstance(error, GatedRepoError):
        return "the repository is gated; log in with `hf auth login` first"
    if isinstance(error, RepositoryNotFoundError):
        return "no such model on Hugging Face"
    log.warning("downloading the model failed: %s", error)
    return "the download failed; the log has the details"


def _file_progress(source: str, progress: Progress):
    from tqdm.auto import tqdm

    class FileProgress(tqdm):
        def update(self, n=1):
            result = super().update(n)
            if self.total:
                progress(f"Downloading {source}: {self.n}/{self.total} files", self.n / self.total)
            return result

    return FileProgress


def load_engine(spec: ModelSpec, progress: Progress, **engine_kwargs) -> TransformersEngine:
    import torch
    import transformers

    from assistant.engine import EngineInfo, TransformersEngine
    from assistant.families import family_of_checkpoint

    path = fetch(spec.source, progress)
    family = family_of_checkpoint(path)
    cuda = torch.cuda.is_available()
    quant = resolve_quant(spec.quant, cuda)
    device = torch.cuda.get_device_name(0) if cuda else "CPU"
    progress(f"Loading {spec.source} ({family.title}, {quant.value}) on {device}…", None)
    try:
        processor = getattr(transformers, family.processor_class).from_pretrained(path)
        model = getattr(transformers, family.model_class).from_pretrained(
            path,
            dtype=torch.bfloat16 if cuda else torch.float32,
            device_map="auto" if cuda else "cpu",
            quantization_config=quantization_config(quant, family.unquantized),
        )
    except torch.OutOfMemoryError:
        log.warning("loading %s ran out of memory", spec.source, exc_info=True)
        raise ModelLoadError(
            f"The model “{spec.source}” does not fit in the GPU's memory: try --quant 4bit, or a smaller model."
        ) from None
    except Exception:  # noqa: BLE001 - safetensors, pickle, shape and config errors alike: the files are at fault
        log.warning("loading %s failed", spec.source, exc_info=True)
        raise cannot_fetch(spec.source, "its files are missing, damaged or of a kind this app cannot load; the log has the details") from None
    model.eval()
    name = f"demo {family.title} (random weights)" if spec.demo else spec.source
    info = EngineInfo(model=name, quant=quant.value, device=device)
    return TransformersEngine(model, processor, info, family, **engine_kwargs)
