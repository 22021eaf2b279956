"""Voice activity detection: how much speech a clip holds, by Silero VAD (its model ships inside the `silero-vad`
wheel, run by onnxruntime). The page's voice mode finds the end of a question in the browser, by loudness; this says
whether what it sent is speech at all (a door, a cough and a fan are not). Knows nothing of Gradio or SQL.
"""

from __future__ import annotations

import threading

import numpy as np

SAMPLE_RATE = 16_000
# Less speech than this is a cough or a click, not a question.
MIN_SPEECH_S = 0.3


class SpeechDetector:
    """Loads the model on first use; one clip at a time (the model keeps state between its windows)."""

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold
        self._model = None
        self._lock = threading.Lock()

    def speech_seconds(self, samples: np.ndarray) -> float:
        """Seconds of speech in 16 kHz mono samples."""
        import torch
        from silero_vad import get_speech_timestamps, load_silero_vad

        with self._lock:
            if self._model is None:
                self._model = load_silero_vad(onnx=True)
            spans = get_speech_timestamps(
                torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)),
                self._model,
                threshold=self.threshold,
                sampling_rate=SAMPLE_RATE,
                return_seconds=True,
            )
        return float(sum(span["end"] - span["start"] for span in spans))

    def has_speech(self, samples: np.ndarray) -> bool:
        return self.speech_seconds(samples) >= MIN_SPEECH_S
