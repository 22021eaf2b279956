"""Every named limit of the app: what one user turn may carry (checked in one place,
`assistant.validation.validate_turn`), what storage keeps, what an import or an API request may hold, how long and
how often an answer may take, wait and be saved, and the defaults of the options that bound the work the app takes on."""

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
# Video (--max-video-seconds): the longest clip, a video file's own size limit (phone clips outgrow MAX_FILE_BYTES)
# and the largest frame (8K UHD) decoded; frames are sampled at the family's rate, at most its frame cap.
MAX_VIDEO_SECONDS = 120.0
MAX_VIDEO_BYTES = 200 * 1024 * 1024
MAX_VIDEO_FRAME_PIXELS = 7680 * 4320
# As a file arrives (a page's upload, an import's member, an API part), before its bytes are decoded, its name or
# declared type is all there is: these are videos, held to MAX_VIDEO_BYTES; decoding it later says what it is.
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv")


def max_file_bytes(name: str, content_type: str = "", video_bytes: int | None = None) -> int:
    """The most bytes a file of this name (or declared type) may be as it arrives; `video_bytes`: --max-video-mb's."""
    video = name.lower().endswith(VIDEO_SUFFIXES) or content_type.lower().startswith("video/")
    return (video_bytes or MAX_VIDEO_BYTES) if video else MAX_FILE_BYTES


# Shorter recordings are a slip of the button, not a question.
MIN_AUDIO_SECONDS = 0.5
# Nothing louder than this (-40 dBFS) is silence: a muted or wrong microphone.
SILENCE_PEAK = 0.01
# Encoder outputs kept in RAM across turns (assistant/reuse.py), least recently used dropped first.
ENCODER_MEMORY_BYTES = 1 << 30


# Storage: a conversation's title and an attachment's file name are cut to these.
MAX_TITLE_CHARS = 200
MAX_FILENAME_CHARS = 255
# An imported transcript's language code and model name are cut to these (their columns' widths).
MAX_LANGUAGE_CHARS = 16
MAX_TRANSCRIPT_MODEL_CHARS = 200
# An API key's name and an account's password.
MAX_KEY_NAME_CHARS = 64
# A user name (letters, digits and ._@-), and the most of a typed one the sign-in form reads.
MAX_USER_NAME_CHARS = 64
MAX_LOGIN_NAME_CHARS = 200
# A search hit's snippet around the match.
SNIPPET_CHARS = 80
MIN_PASSWORD_CHARS = 8

# Exports: refuse zips that would unpack past these before reading a byte of them (zip bombs).
MAX_UNPACKED_BYTES = 2 * 1024**3
MAX_MEMBERS = 100_000
MAX_JSON_BYTES = 512 * 1024**2
# One import is one transaction: these keep a small, highly compressible file from making one that holds the
# database's write lock for minutes (and leave room for a household's whole ChatGPT history).
MAX_IMPORT_CONVERSATIONS = 10_000
MAX_IMPORT_MESSAGES = 250_000

# Generation settings a conversation (or an API request) may ask for.
MAX_SYSTEM_PROMPT_CHARS = 20_000
MAX_NEW_TOKENS_LIMIT = 32_768

# The OpenAI-compatible API: a request's body holds a video at its limit, base64-encoded (4/3: 267 MB), with room for
# its text and a few small files; more media than that come by URL (--allow-remote-media).
MAX_BODY_BYTES = 288 * 1024**2
MAX_STOP_STRINGS = 4
# A media URL fetched for the API (--allow-remote-media): connect, request, headers and body, all together.
REMOTE_MEDIA_DEADLINE_S = 20.0
# The wait an API request refused for a full queue (API_QUEUE_LIMIT, below) is told.
RETRY_AFTER_S = 5

# --- answers (the engines, assistant/answering.py, assistant/answer_writer.py, assistant/dialogue.py) ---
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
# The most text one request to /v1/audio/speech may ask to be spoken (OpenAI's limit too).
MAX_SPEECH_INPUT_CHARS = 4096
# ... and its whole JSON body: that text and a few short fields.
MAX_SPEECH_BODY_BYTES = 64 * 1024
# A new conversation's title: its first line, cut to this many characters.
AUTO_TITLE_CHARS = 60

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

# The compiled decode's static KV caches (assistant/compiled.py) come in powers of two from this length: a short
# cache costs little attention per token (at 2,048 tokens, under 3% of a 7B nf4 step's bytes) and few lengths
# mean few compilations.
COMPILED_CACHE_MIN_TOKENS = 2048
