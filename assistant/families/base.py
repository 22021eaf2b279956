"""The contract every model family implements; knows nothing of storage, queueing or the UI.

A family is what its models accept (`Capabilities`), how a checkpoint of it is loaded (the transformers classes,
the modules kept unquantized in 4/8-bit, the processor's keyword arguments), how to build a tiny random checkpoint
of it for `--demo` and the tests, and how work is kept across its turns (`ReuseContract`). Conversations reach
every family in the same Hugging Face chat format (content items `{"type": "image"}`, `{"type": "audio"}`,
`{"type": "text", "text": ...}`) with the images and audio in order; the processor turns that into tensors.
A family reads as its capabilities (`family.title`, `family.hears()`...), so code that only needs what a model
accepts takes a `Family` or a bare `Capabilities` alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from assistant.families.capabilities import Capabilities
from assistant.families.reuse_contract import ReuseContract
from domain.types import MediaKind


def _images_and_audio(images: list, audios: list) -> dict:
    return {"images": images or None, "audio": audios or None}


@dataclass(frozen=True)
class Family:
    capabilities: Capabilities
    model_types: tuple[str, ...]  # config.json "model_type" values this family loads
    model_class: str  # transformers class loaded with from_pretrained
    unquantized: tuple[str, ...]  # module paths kept out of 4/8-bit; a list replaces the defaults, so lm_head too
    build_demo: Callable[[Path], None]  # writes a tiny random checkpoint (config, weights, processor) to a folder
    reuse: ReuseContract | None = None  # None: every turn is prefilled whole
    processor_class: str = "AutoProcessor"
    # The processor's media keywords for the images and audio of a prompt (every 5.x processor takes "audio").
    processor_kwargs: Callable[[list, list], dict] = field(default=_images_and_audio)

    # What the family accepts, read through: engines and pages ask a Family and a remote model's Capabilities alike.
    @property
    def name(self) -> str:
        return self.capabilities.name

    @property
    def title(self) -> str:
        return self.capabilities.title

    @property
    def accepts(self) -> frozenset[MediaKind]:
        return self.capabilities.accepts

    @property
    def context_tokens(self) -> int:
        return self.capabilities.context_tokens

    @property
    def audio_window_s(self) -> float:
        return self.capabilities.audio_window_s

    def hears(self) -> bool:
        return self.capabilities.hears()

    def sees(self) -> bool:
        return self.capabilities.sees()

    def describe_accepts(self) -> str:
        return self.capabilities.describe_accepts()
