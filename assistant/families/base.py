"""The contract every model family implements; knows nothing of storage, queueing or the UI.

A family is what its models accept (`Capabilities`), how a checkpoint of it is loaded (the transformers classes,
the modules kept unquantized in 4/8-bit, the processor's keyword arguments), how to build a tiny random checkpoint
of it for `--demo` and the tests, and how work is kept across its turns (`ReuseContract`). Conversations reach
every family in the same Hugging Face chat format (content items `{"type": "image"}`, `{"type": "audio"}`, `{"type": "video"}`,
`{"type": "text", "text": ...}`) with the images and audio in order; the processor turns that into tensors.
A `Family` is a `Capabilities` with the rest added, so code that only needs what a model accepts takes a `Family`
or a remote model's bare `Capabilities` alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

from assistant.families.capabilities import Capabilities
from assistant.families.reuse_contract import ReuseContract


def _images_and_audio(images: list, audios: list, videos: list, sounds: list | None = None) -> dict:
    return {"images": images or None, "audio": audios or None}


@dataclass(frozen=True, kw_only=True)
class Family(Capabilities):
    """What its models accept (the Capabilities fields it extends), then how they are loaded and reused."""

    model_types: tuple[str, ...]  # config.json "model_type" values this family loads
    model_class: str  # transformers class loaded with from_pretrained
    unquantized: tuple[str, ...]  # module paths kept out of 4/8-bit; a list replaces the defaults, so lm_head too
    build_demo: Callable[[Path], None]  # writes a tiny random checkpoint (config, weights, processor) to a folder
    reuse: ReuseContract | None = None  # None: every turn is prefilled whole
    processor_class: str = "AutoProcessor"
    # The processor's media keywords for the images, audio and videos (assistant.media.VideoClip) of a prompt (every
    # 5.x processor takes "audio"); a family that takes video passes its frames, rate and, if it hears, sound track.
    # With videos, the engine also passes `sounds=` (assistant.prompt.ModelInput.sound_order): where each video's
    # sound track falls among the audio.
    processor_kwargs: Callable[..., dict] = field(default=_images_and_audio)
    # Model inputs added to the processor's output when a prompt has videos (Qwen2.5-Omni: use_audio_in_video).
    video_model_inputs: tuple[tuple[str, object], ...] = ()
    # A model that speaks for itself (a talker): the class loaded instead when answers are spoken, the modules kept out
    # of 4/8-bit in it, and `own_voice(model, processor)` -> (the model that writes the text, its speech engine).
    speech_model_class: str | None = None
    speech_unquantized: tuple[str, ...] = ()
    own_voice: Callable[[object, object], tuple[object, object]] | None = None

    @property
    def capabilities(self) -> Capabilities:
        """What it accepts alone, without how it loads (a remote engine's description of a known model)."""
        return Capabilities(**{f.name: getattr(self, f.name) for f in fields(Capabilities)})
