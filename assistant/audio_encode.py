"""Sound to bytes in the formats clients ask for (OpenAI's: wav, mp3, opus, aac, flac, raw pcm16), with PyAV's FFmpeg.

Everything comes out at 24 kHz mono (opus at 48 kHz, the rates its encoder takes), as OpenAI's audio does; raw pcm is
16-bit little-endian, which is what its clients play. Knows nothing of where the sound came from.
"""

from __future__ import annotations

import io
import wave

import numpy as np

RATE = 24_000
MIME = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "pcm": "audio/pcm",
}
# format -> (container, codec, rate)
_CODECS = {
    "mp3": ("mp3", "libmp3lame", RATE),
    "opus": ("ogg", "libopus", 48_000),
    "aac": ("adts", "aac", RATE),
    "flac": ("flac", "flac", RATE),
}


def resample(samples: np.ndarray, rate: int, target: int = RATE) -> np.ndarray:
    """Mono float32 at `target` Hz."""
    samples = np.asarray(samples, dtype=np.float32)
    if rate == target or len(samples) == 0:
        return samples
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=target)
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = rate
    parts = [out.to_ndarray().reshape(-1) for out in (*resampler.resample(frame), *resampler.resample(None))]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, dtype=np.float32)


def pcm16(samples: np.ndarray, rate: int) -> bytes:
    """Raw 16-bit little-endian mono at 24 kHz."""
    return (np.clip(resample(samples, rate), -1.0, 1.0) * 32767).astype("<i2").tobytes()


def encode(samples: np.ndarray, rate: int, fmt: str) -> bytes:
    if fmt == "pcm":
        return pcm16(samples, rate)
    if fmt == "wav":
        out = io.BytesIO()
        with wave.open(out, "wb") as file:
            file.setnchannels(1)
            file.setsampwidth(2)
            file.setframerate(RATE)
            file.writeframes(pcm16(samples, rate))
        return out.getvalue()
    container_format, codec, target = _CODECS[fmt]
    import av

    out = io.BytesIO()
    with av.open(out, "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=target, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            np.clip(resample(samples, rate, target), -1.0, 1.0).reshape(1, -1), format="flt", layout="mono"
        )
        frame.sample_rate = target
        resampler = av.AudioResampler(format=stream.codec_context.format, layout="mono", rate=target, frame_size=stream.codec_context.frame_size or None)
        for part in (*resampler.resample(frame), *resampler.resample(None)):
            container.mux(stream.encode(part))
        container.mux(stream.encode(None))
    return out.getvalue()


def change_tempo(samples: np.ndarray, rate: int, speed: float) -> np.ndarray:
    """Faster or slower (`speed` 0.25–4) at the same pitch, by FFmpeg's atempo (at least 0.5 per stage)."""
    import av
    import av.filter

    graph = av.filter.Graph()
    chain = [graph.add_abuffer(format="flt", sample_rate=rate, layout="mono")]
    while speed < 0.5:
        chain.append(graph.add("atempo", "0.5"))
        speed /= 0.5
    chain.append(graph.add("atempo", f"{speed:.6f}"))
    chain.append(graph.add("abuffersink"))
    for a, b in zip(chain, chain[1:]):
        a.link_to(b)
    graph.configure()
    frame = av.AudioFrame.from_ndarray(np.asarray(samples, dtype=np.float32).reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = rate
    graph.push(frame)
    graph.push(None)
    parts = []
    while True:
        try:
            parts.append(graph.pull().to_ndarray().reshape(-1))
        except (av.error.EOFError, av.error.BlockingIOError):
            break
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, dtype=np.float32)
