"""The contract every model family implements; knows nothing of storage, queueing or the UI.

A family says what a checkpoint accepts besides text, which transformers classes load it, which
modules stay unquantized in 4/8-bit, how long its context and audio window are, and how to build a
tiny random checkpoint of it for `--demo` and the tests. Conversations reach every family in the
same Hugging Face chat format (content items `{"type": "image"}`, `{"type": "audio"}`,
`{"type": "text", "text": ...}`) with the images and audio in order; `prepare` turns that into tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from domain.types import MediaKind


@dataclass(frozen=True)
class Family:
    name: str  # what --demo FAMILY and messages call it, e.g. "qwen2.5-vl"
    title: str  # for people, e.g. "Qwen2.5-VL"
    model_types: tuple[str, ...]  # config.json "model_type" values this family loads
    accepts: frozenset[MediaKind]  # besides text
    model_class: str  # transformers class loaded with from_pretrained
    unquantized: tuple[str, ...]  # module paths kept out of 4/8-bit; a list replaces the defaults, so lm_head too
    license: str
    build_demo: Callable[[Path], None]  # writes a tiny random checkpoint (config, weights, processor) to a folder
    context_tokens: int  # the published models' context length (max_position_embeddings)
    processor_class: str = "AutoProcessor"
    audio_window_s: float = 30.0  # longest clip one audio item may be; longer clips go in as several, in order
    # Keyword the processor takes the audio list under (every 5.x processor takes "audio").
    processor_kwargs: Callable[[list, list], dict] = field(
        default=lambda images, audios: {"images": images or None, "audio": audios or None}
    )

    def hears(self) -> bool:
        return MediaKind.AUDIO in self.accepts

    def sees(self) -> bool:
        return MediaKind.IMAGE in self.accepts

    def describe_accepts(self) -> str:
        kinds = ["text"] + [kind.value + "s" for kind in (MediaKind.IMAGE, MediaKind.AUDIO) if kind in self.accepts]
        return ", ".join(kinds[:-1]) + " and " + kinds[-1] if len(kinds) > 1 else kinds[0]
