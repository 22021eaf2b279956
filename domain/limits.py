"""Limits on what one user turn may carry; checked in one place, `assistant.validation.validate_turn`."""

MAX_MESSAGE_CHARS = 20_000
MAX_FILES_PER_MESSAGE = 8
MAX_FILE_BYTES = 25 * 1024 * 1024
# A guard against decompression bombs; the processor scales every image to the model's pixel budget anyway.
MAX_IMAGE_PIXELS = 50_000_000
# Qwen2-VL's image processor (smart_resize) refuses images more elongated than this. It scales tiny
# images up (1×1 works), so there is no minimum side.
MAX_IMAGE_ASPECT_RATIO = 200
# The Whisper-derived audio encoder sees 30 s windows; the feature extractor truncates past that.
MAX_AUDIO_SECONDS = 30.0
