"""Limits on what one user turn may carry; checked in one place, `assistant.validation.validate_turn`."""

MAX_MESSAGE_CHARS = 20_000
MAX_FILES_PER_MESSAGE = 8
MAX_FILE_BYTES = 25 * 1024 * 1024
# Decompression-bomb guard; the processor downsizes anything under this to the model's pixel budget.
MAX_IMAGE_PIXELS = 50_000_000
# The Whisper-derived audio encoder sees 30 s windows; the feature extractor truncates past that.
MAX_AUDIO_SECONDS = 30.0

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic")
AUDIO_EXTENSIONS = (".wav", ".mp3", ".ogg", ".opus", ".webm", ".m4a", ".aac", ".flac")
