"""Every limit in one place: what one user turn may carry (checked in one place, `assistant.validation.validate_turn`),
and the defaults of the options that bound the work the app takes on."""

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

# Defaults of the options of the same names (run.py --help).
# --engine-concurrency: answers sent to a remote generation server at once (it batches them).
ENGINE_CONCURRENCY = 64
# --api-queue-limit: when this many answers wait for the model already, API requests get 429 with Retry-After.
API_QUEUE_LIMIT = 32
# The longest demo answer unless --max-new-tokens says otherwise: its random weights make any answer meaningless.
DEMO_MAX_NEW_TOKENS = 64

# Sign-in, OWASP's usual figures: a person who forgot their password gets five tries a quarter of an hour; one
# address (a household behind one router) gets twenty across its users.
FAILURES_PER_USER = 5
FAILURES_PER_ADDRESS = 20
FAILURE_WINDOW_S = 15 * 60
MAX_TRACKED = 10_000  # names and addresses remembered at once; the oldest are forgotten first
MAX_LOGIN_BODY = 16 * 1024
# Argon2 verification costs ~50 ms of CPU and 64 MiB each: at most this many at once.
VERIFY_THREADS = 2
# An export not downloaded within the hour is deleted.
EXPORT_TTL_S = 3600
