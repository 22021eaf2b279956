"""The processor keywords for videos that the Qwen families share; knows nothing of storage or the UI.

Clips arrive decoded and sampled (assistant.media.VideoClip), so the processors are told not to sample again and
given each clip's real rate, which places its frames in time (Qwen2.5-VL's seconds per grid, Qwen3-VL's
timestamps). Qwen2.5-Omni also hears a video's sound track in the same item (`load_audio_from_video`, the processor
interleaving frames and sound two seconds at a time); its processor takes one rate for all the videos of a prompt,
so it gets a fixed one: a clip must come out the same whatever else its prompt holds, or its placeholder and
encoder output could not be kept across turns (assistant/reuse.py).
"""

from __future__ import annotations

import numpy as np

from assistant.media import SAMPLE_RATE
from assistant.video import thinned

# The rate Qwen2.5-Omni's processor assumes (it saves none in the published checkpoint) and its family samples at.
OMNI_FPS = 2.0
# The 30-second window the Whisper feature extractor pads and cuts to; a longer sound track asks for more.
_WINDOW_SAMPLES = 30 * SAMPLE_RATE


def video_metadata(clip) -> dict:
    count = len(clip.frames)
    height, width = clip.frames.shape[1:3]
    return {
        "total_num_frames": count, "fps": clip.fps, "frames_indices": list(range(count)), "duration": clip.seconds,
        "height": height, "width": width,
    }  # fmt: skip


def sampled_kwargs(images: list, audios: list, videos: list, sounds: list | None = None) -> dict:
    """Images, audio and videos (frames as they were sampled, each with its rate and so its timestamps)."""
    kwargs = {"images": images or None, "audio": audios or None}
    if videos:
        kwargs.update(
            videos=[clip.frames for clip in videos],
            video_metadata=[video_metadata(clip) for clip in videos],
            do_sample_frames=False,
        )
    return kwargs


def qwen_vision_kwargs(images: list, audios: list, videos: list, sounds: list | None = None) -> dict:
    """As `sampled_kwargs`, with the Qwen vision processors' per-frame pixel budget of qwen-vl-utils, as the published
    models were trained."""
    kwargs = sampled_kwargs(images, audios, videos)
    if videos:
        kwargs["cap_pixels_per_frame"] = True
    return kwargs


def omni_kwargs(images: list, audios: list, videos: list, sounds: list | None = None) -> dict:
    """Qwen2.5-Omni: each video with its sound track in the same item, in the order the prompt has its sounds.

    `sounds` lists the prompt's sounds in order: None for the next of `audios`, i for the sound track of `videos[i]`
    (assistant.prompt.ModelInput.sound_order). A video without sound hears silence of its length: the model places a
    prompt's videos either all with sound or all without. One fixed rate for all (OMNI_FPS), which the family samples
    every clip at for its whole length (Capabilities.video_total_pixels), so frames and sound stay paired; a clip
    taken faster is thinned to it.
    """
    if not videos:
        return {"images": images or None, "audio": audios or None}
    rate = OMNI_FPS
    order = list(sounds) if sounds is not None else [None] * len(audios) + list(range(len(videos)))
    standalone = iter(audios)
    slots = [next(standalone) if source is None else _sound_track(videos[source]) for source in order]
    kwargs = {
        "images": images or None,
        "videos": [_at_rate(clip, rate) for clip in videos],
        "audio": slots,
        "audio_from_video_indices": order,
        "load_audio_from_video": True,
        "fps": rate,
        "do_sample_frames": False,
        "cap_pixels_per_frame": True,
    }
    longest = max(len(slot) for slot in slots)
    if longest > _WINDOW_SAMPLES:
        # A sound track past 30 s is heard whole: every slot padded to the longest (the mask marks the real part).
        kwargs["audio_kwargs"] = {"truncation": False, "max_length": longest}
    return kwargs


def _sound_track(clip) -> np.ndarray:
    length = int(round(clip.seconds * SAMPLE_RATE))
    if clip.audio is None:
        return np.zeros(length, np.float32)
    return clip.audio if len(clip.audio) >= length else np.pad(clip.audio, (0, length - len(clip.audio)))


def _at_rate(clip, rate: float) -> np.ndarray:
    """The clip's frames thinned to `rate` frames a second (an even number, as sampled)."""
    if clip.fps <= rate * 1.001:
        return clip.frames
    return thinned(clip, int(len(clip.frames) * rate / clip.fps)).frames
