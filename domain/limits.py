"""Limits on what one user turn may carry; checked in one place, `assistant.validation.validate_turn`."""

MAX_MESSAGE_CHARS = 20_000
MAX_FILES_PER_MESSAGE = 8
MAX_FILE_BYTES = 25 * 1024 * 1024
# A guard against decompression bombs; the processor scales every image to the model's pixel budget anyway.
MAX_IMAGE_PIXELS = 50_000_000
# Qwen2-VL's image processor (smart_resize) refuses images more elongated than this. It scales tiny
# images up (1×1 works), so there is no minimum side.
MAX_IMAGE_ASPECT_RATIO = 200
# The default longest audio clip (--max-audio-seconds). Models hear it in windows of what their audio encoder
# takes (30 s for Whisper-derived towers), in order; the transcript covers the whole clip.
MAX_AUDIO_SECONDS = 300.0
# Shorter recordings are a slip of the button, not a question.
MIN_AUDIO_SECONDS = 0.5
# Nothing louder than this (-40 dBFS) is silence: a muted or wrong microphone.
SILENCE_PEAK = 0.01
# Encoder outputs kept in RAM across turns (assistant/reuse.py), least recently used dropped first.
ENCODER_MEMORY_BYTES = 1 << 30
