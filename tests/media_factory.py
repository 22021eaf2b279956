"""Audio files of every supported container, encoded on the spot with PyAV."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# (suffix, container format, codec, sample rate, layout)
FORMATS = [
    (".wav", "wav", "pcm_s16le", 44100, "stereo"),
    (".mp3", "mp3", "libmp3lame", 44100, "stereo"),
    (".ogg", "ogg", "libopus", 48000, "mono"),
    (".webm", "webm", "libopus", 48000, "mono"),
    (".m4a", "ipod", "aac", 44100, "stereo"),
    (".flac", "flac", "flac", 22050, "mono"),
]


def write_tone(path: Path, seconds: float, rate: int = 44100, fmt: str = "wav", codec: str = "pcm_s16le", layout: str = "mono") -> Path:
    import av

    channels = 2 if layout == "stereo" else 1
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        frame_format = "s16" if codec.startswith("pcm") else stream.codec_context.format.name
        pcm = np.tile(wave, (channels, 1))
        if frame_format.startswith("s16"):
            pcm = (pcm * 32767).astype(np.int16)
        elif frame_format.startswith("s32"):
            pcm = (pcm * 2_147_483_000).astype(np.int32)
        packed = not frame_format.endswith("p")
        step = stream.codec_context.frame_size or 1024
        for start in range(0, pcm.shape[1], step):
            chunk = pcm[:, start : start + step]
            data = chunk.T.reshape(1, -1) if packed else chunk
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=frame_format, layout=layout)
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path
