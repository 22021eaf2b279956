"""A decoded video (assistant.media.VideoClip: sampled frames, their rate, the sound track) back to an MP4's bytes,
with PyAV's FFmpeg: how the remote engine sends a video to a server that takes `video_url`. H.264 (MPEG-4 Part 2
where FFmpeg lacks libx264) and AAC, encoded the same way each time, so the same clip makes the same bytes turn after
turn (a server's prefix cache sees them again). Knows nothing of where the clip came from, nor of torch.
"""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np

SAMPLE_RATE = 16_000  # the sound track's, as assistant.media decodes it


def mp4_bytes(frames: np.ndarray, fps: float, audio: np.ndarray | None = None) -> bytes:
    """`frames` (count × height × width × 3, uint8) shown at `fps`; `audio` 16 kHz mono float32, or None."""
    import av

    frames = np.asarray(frames, dtype=np.uint8)
    height, width = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2  # 4:2:0 needs even sides
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        rate = Fraction(fps).limit_denominator(1000)
        video = container.add_stream(codec, rate=rate)
        video.width, video.height, video.pix_fmt = max(width, 2), max(height, 2), "yuv420p"
        video.codec_context.time_base = 1 / rate
        if codec == "libx264":
            video.options = {"preset": "veryfast", "crf": "18", "threads": "1"}
        sound = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono") if audio is not None and len(audio) else None
        for i, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(_even(pixels, video.height, video.width)), format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if sound is not None:
            _encode_sound(container, sound, np.asarray(audio, dtype=np.float32))
    return out.getvalue()


def _even(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    if pixels.shape[0] >= height and pixels.shape[1] >= width:
        return pixels[:height, :width]
    return np.pad(pixels, ((0, height - pixels.shape[0]), (0, width - pixels.shape[1]), (0, 0)))  # a 1-pixel side


def _encode_sound(container, stream, samples: np.ndarray) -> None:
    import av

    step = stream.codec_context.frame_size or 1024
    samples = np.clip(samples, -1.0, 1.0)
    for start in range(0, len(samples), step):
        frame = av.AudioFrame.from_ndarray(samples[start : start + step].reshape(1, -1), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = SAMPLE_RATE, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
