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

# --- answers (assistant/engine.py, assistant/remote_engine.py, assistant/dialogue.py) ---
# The answer's length in tokens when neither the settings nor --max-new-tokens say (at most half the context).
DEFAULT_MAX_NEW_TOKENS = 1024
# How long the in-process model may produce nothing before its answer is abandoned.
DEFAULT_STREAM_TIMEOUT_S = 300.0
# A remote engine server: how long to wait to connect, and for its next chunk.
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 300.0
# The most of a remote server's own error message that a person is shown.
SAID_CHARS = 200
# A streaming answer is saved at most this often (the stream never waits for the write).
SAVE_INTERVAL_S = 1.0
# How long the end of an answer may keep its reader waiting for the write: past it, the reader gets the answer
# from memory and the write goes on in the background.
FINISH_WAIT_S = 3.0
# A new conversation's title: its first line, cut to this many characters.
TITLE_CHARS = 60
