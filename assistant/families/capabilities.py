"""What a model accepts, apart from how it is loaded: the media kinds it takes besides text, its context length
and its audio window. Both engines describe their model with one (a family holds its own; a remote engine builds
one from the served model's name). No torch here: the page, validation and the remote engine import it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.i18n import Text, t
from domain.types import MediaKind


@dataclass(frozen=True)
class Capabilities:
    name: str  # what --demo FAMILY and messages call it, e.g. "qwen2.5-vl"; a remote model's served name
    title: str  # for people, e.g. "Qwen2.5-VL"
    accepts: frozenset[MediaKind]  # besides text
    context_tokens: int  # prompt and answer together (the published models' max_position_embeddings)
    audio_window_s: float = 30.0  # longest clip one audio item may be; longer clips go in as several, in order
    video_fps: float = 2.0  # frames a second sampled from a video (the family's published rate)
    video_max_frames: int = 64  # at most this many frames of one video; a longer one is sampled more sparsely
    # Set for a family whose processor times every video at `video_fps` (Qwen2.5-Omni pairs frames with sound by it):
    # its videos keep that rate for their whole length (`video_max_frames` then only cuts one past that many frames),
    # their frames scaled down to share this many pixels (assistant.video.frame_pixels), and the context budget cuts
    # their resolution, never their frames.
    video_total_pixels: int | None = None

    def fixed_video_rate(self) -> bool:
        return self.video_total_pixels is not None

    def hears(self) -> bool:
        return MediaKind.AUDIO in self.accepts

    def sees(self) -> bool:
        return MediaKind.IMAGE in self.accepts

    def watches(self) -> bool:
        return MediaKind.VIDEO in self.accepts

    def describe_accepts(self) -> Text:
        """"text, images and audios": what people are told the model takes (said in their language)."""
        return t("accepts." + "_".join(["text"] + [kind.value for kind in MediaKind if kind in self.accepts]))
