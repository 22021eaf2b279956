"""Turn stored history into the model's chat format plus its media, in order; knows nothing of models."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from assistant.families.capabilities import Capabilities
from assistant.media import SAMPLE_RATE, MediaLoader
from assistant.video import FRAME_PIXELS, thinned
from assistant.validation import check_image_shape
from domain.errors import InvalidInput
from domain.types import Attachment, MediaKind, Message, Role, Status, TranscriptStatus

log = logging.getLogger(__name__)


@dataclass
class ModelInput:
    """A conversation in the Hugging Face chat format, with the images and audio its placeholders stand for."""

    conversation: list[dict]
    images: list = field(default_factory=list)
    audios: list[np.ndarray] = field(default_factory=list)
    videos: list = field(default_factory=list)  # assistant.media.VideoClip: sampled frames, their rate, sound track
    # What each image, audio window and video is (sha256, and window number for audio): tells same-size media apart.
    image_keys: list[str] = field(default_factory=list)
    audio_keys: list[str] = field(default_factory=list)
    video_keys: list[str] = field(default_factory=list)
    # The prompt's sounds in order: None for the next of `audios`, i for the sound track of videos[i] (a family that
    # hears a video's sound in the same item needs to know where it falls among the audio).
    sound_order: list[int | None] = field(default_factory=list)


@dataclass
class Fitting:
    """What to leave out of a conversation so it fits the model's context (see assistant.budget)."""

    # (message id, position): a model that hears audio gets the transcript (or a note); one that hears only
    # transcripts anyway gets the note.
    audio_as_text: set[tuple[int, int]] = field(default_factory=set)
    images_as_notes: set[tuple[int, int]] = field(default_factory=set)
    videos_as_notes: set[tuple[int, int]] = field(default_factory=set)
    video_frames: dict[tuple[int, int], int] = field(default_factory=dict)  # a video's frames, fewer than its family's cap
    # A video of a family with a fixed rate keeps its frames: each is this many times fewer pixels instead.
    video_shrink: dict[tuple[int, int], int] = field(default_factory=dict)
    first_message: int = 0  # the history from this index on; earlier turns are dropped
    last_text_chars: int | None = None  # the last question's text cut to its last N characters


def left_out_note(attachment: Attachment) -> str:
    return f"[The {attachment.kind.value} “{attachment.filename}” attached here is left out: the conversation is too long.]"


def unreadable_note(attachment: Attachment) -> str:
    return f"[The {attachment.kind.value} “{attachment.filename}” attached here can no longer be read, so it is left out.]"


def unseen_note(attachment: Attachment, family: Capabilities) -> str:
    return f"[An image “{attachment.filename}” is attached here, but {family.title} cannot see images.]"


def unwatched_note(attachment: Attachment, family: Capabilities) -> str:
    """What a model without video gets for a video stored earlier: a note, and what its sound track said if known."""
    note = f"[A video “{attachment.filename}” is attached here, but {family.title} cannot watch videos."
    if has_transcript(attachment) and attachment.transcript.text:
        return note + f" Its sound track, transcribed: {attachment.transcript.text}]"
    return note + "]"


def video_key(attachment: Attachment, clip) -> str:
    """The clip as sampled: the same file taken at another rate, frame count or frame size is another input."""
    count, height, width = clip.frames.shape[:3]
    return f"{attachment.sha256}@{clip.fps:.4g}fps×{count}×{width}x{height}"


def has_transcript(attachment: Attachment) -> bool:
    return attachment.transcript is not None and attachment.transcript.status is TranscriptStatus.DONE


def transcript_text(attachment: Attachment) -> str:
    """What a model without an audio tower gets in place of the audio: its transcript, or why there is none."""
    transcript = attachment.transcript
    if has_transcript(attachment):
        return f"[Audio “{attachment.filename}”, transcribed: {transcript.text}]"
    # Why not is for people (shown under the audio), never for the model: it could name the app's internals.
    return f"[Audio “{attachment.filename}” is attached here but could not be transcribed, so it is left out.]"


def audio_windows(audio: np.ndarray, window_s: float) -> list[np.ndarray]:
    """The clip cut into pieces of at most `window_s` seconds, in order (the audio encoder takes no more)."""
    size = max(int(window_s * SAMPLE_RATE), 1)
    return [audio[start : start + size] for start in range(0, len(audio), size)] or [audio]


def build_model_input(
    history: Sequence[Message],
    media: MediaLoader,
    system_prompt: str | None = None,
    family: Capabilities | None = None,
    fitting: Fitting | None = None,
) -> ModelInput:
    """Every earlier turn goes in, its images and audio included; answers that produced no text are left out.

    A model that does not hear audio gets each clip's transcript instead; one that does hears clips longer
    than its audio window as several windows, in order. Videos are sampled at the family's rate up to its frame
    cap (fewer where the budget asks); a family with a fixed rate gets all of each at that rate, its frames sharing
    a pixel budget (smaller where the budget asks). A model without video gets a note and the sound track's
    transcript. A stored file that can no longer be read (deleted, corrupted on disk, saved before a check existed)
    becomes a short note to the model, so one bad file never breaks its conversation.
    """
    hears = family is None or family.hears()
    sees = family is None or family.sees()
    watches = family is None or family.watches()
    fps = family.video_fps if family is not None else 2.0
    max_frames = family.video_max_frames if family is not None else 64
    total_pixels = family.video_total_pixels if family is not None else None
    window_s = family.audio_window_s if family is not None else 30.0
    fitting = fitting or Fitting()
    result = ModelInput(conversation=[])
    if system_prompt:
        result.conversation.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    kept = list(history)[fitting.first_message :]
    last_question = max((i for i, m in enumerate(kept) if m.role is Role.USER), default=-1)
    for index, message in enumerate(kept):
        if message.role is Role.ASSISTANT and (message.status is Status.STREAMING or not message.text):
            continue
        content: list[dict] = []
        for position, attachment in enumerate(message.attachments):
            key = (message.id, position)
            try:
                if key in fitting.images_as_notes or key in fitting.videos_as_notes:
                    content.append({"type": "text", "text": left_out_note(attachment)})
                elif key in fitting.audio_as_text:
                    note = transcript_text(attachment) if hears and has_transcript(attachment) else left_out_note(attachment)
                    content.append({"type": "text", "text": note})
                elif attachment.kind is MediaKind.IMAGE:
                    if not sees:
                        content.append({"type": "text", "text": unseen_note(attachment, family)})
                        continue
                    image = media.image(attachment.path, attachment.filename)
                    check_image_shape(image.width, image.height, attachment.filename)
                    result.images.append(image)
                    result.image_keys.append(attachment.sha256)
                    content.append({"type": "image"})
                elif attachment.kind is MediaKind.VIDEO:
                    if not watches:
                        content.append({"type": "text", "text": unwatched_note(attachment, family)})
                        continue
                    # Stored videos passed the length limit in force then; all of each is sampled. Fewer frames (the
                    # budget's) are taken from those, not decoded again. A family with a fixed rate gets every frame
                    # at it (a clip past its frame cap is cut, not sampled sparser), smaller ones when the budget asks.
                    if total_pixels is not None:
                        shrink = fitting.video_shrink.get(key, 1)
                        clip = media.video(
                            attachment.path, fps, max_frames, max_frames / fps, FRAME_PIXELS, total_pixels, shrink=shrink
                        )
                    else:
                        clip = media.video(attachment.path, fps, max_frames, math.inf, FRAME_PIXELS)
                    if key in fitting.video_frames:
                        clip = thinned(clip, fitting.video_frames[key])
                    check_image_shape(clip.frames.shape[2], clip.frames.shape[1], attachment.filename)
                    result.videos.append(clip)
                    result.video_keys.append(video_key(attachment, clip))
                    result.sound_order.append(len(result.videos) - 1)
                    content.append({"type": "video"})
                    if not hears and has_transcript(attachment) and attachment.transcript.text:
                        # A model that watches but does not hear gets what the sound track said.
                        heard = f"[The sound track of “{attachment.filename}”, transcribed: {attachment.transcript.text}]"
                        content.append({"type": "text", "text": heard})
                elif not hears:
                    content.append({"type": "text", "text": transcript_text(attachment)})
                else:
                    for number, window in enumerate(audio_windows(media.audio(attachment.path), window_s)):
                        result.audios.append(window)
                        result.audio_keys.append(f"{attachment.sha256}#{number}@{window_s:g}")
                        result.sound_order.append(None)
                        content.append({"type": "audio"})
            except InvalidInput as error:
                log.warning("left out of the prompt: %s", error)
                content.append({"type": "text", "text": unreadable_note(attachment)})
        text = message.text
        if fitting.last_text_chars is not None and index == last_question:
            text = "…" + text[-fitting.last_text_chars :] if len(text) > fitting.last_text_chars else text
        if text:
            content.append({"type": "text", "text": text})
        result.conversation.append({"role": message.role.value, "content": content})
    return result
