"""`POST /v1/audio/speech` and `POST /v1/audio/transcriptions` in OpenAI's shape, so that Open WebUI and other clients
can use this app for text-to-speech and speech-to-text. Same keys, limits and error shape as the chat routes.

Speech comes from the app's voice (assistant.speech); transcripts from its Whisper. Neither is stored: these routes
hold no conversation.
"""

from __future__ import annotations

import io
import json
import logging
import math
import tempfile
from collections.abc import Callable
from pathlib import Path

import anyio
import numpy as np

from api.errors import ApiError
from api.routes import read_body, require_json
from assistant.audio_encode import MIME, encode
from assistant.speech import SpeechEngine
from assistant.validation import validate_file
from domain import limits
from domain.errors import InvalidInput, ModelLoadError, SpeechUnavailable
from domain.i18n import t
from domain.types import MediaKind

log = logging.getLogger(__name__)

SPEECH_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
TRANSCRIPTION_MODELS = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
TRANSCRIPT_FORMATS = ("json", "text", "verbose_json", "srt", "vtt")


class AudioApi:
    def __init__(
        self,
        owner: Callable,
        guarded: Callable,
        model_id: str,
        speech: SpeechEngine | None,
        transcriber,
        upload_dir: Path,
        decode: Callable[[Path], np.ndarray],
        max_audio_seconds: float = limits.MAX_AUDIO_SECONDS,
    ):
        """`owner(request)` checks the caller's key (ApiError otherwise), `guarded(handler)` turns failures into
        OpenAI's errors (api.routes); `transcriber`: assistant.transcribe.Transcriber or None (transcripts off);
        `decode(path)`: a checked file's 16 kHz mono samples."""
        self.owner = owner
        self.guarded = guarded
        self.model_id = model_id
        self.speech = speech
        self.transcriber = transcriber
        self.upload_dir = upload_dir
        self.decode = decode
        self.max_audio_seconds = max_audio_seconds
        self._threads = anyio.CapacityLimiter(4)

    def routes(self) -> list:
        from starlette.routing import Route

        return [
            Route("/v1/audio/speech", self.guarded(self.create_speech), methods=["POST"]),
            Route("/v1/audio/transcriptions", self.guarded(self.create_transcription), methods=["POST"]),
        ]

    async def create_speech(self, request):
        from starlette.responses import Response

        self.owner(request)
        require_json(request)
        body = _object(await read_body(request, limits.MAX_SPEECH_BODY_BYTES))
        model = _string(body, "model", required=True)
        if model not in (*SPEECH_MODELS, self.model_id):
            raise ApiError(404, f"The speech model {model!r} does not exist here: use tts-1, tts-1-hd or {self.model_id!r}.",
                           "model", "model_not_found")
        text = _string(body, "input", required=True)
        if not text.strip():
            raise ApiError(400, "`input` is empty: give the text to speak.", "input", "invalid_input")
        if len(text) > limits.MAX_SPEECH_INPUT_CHARS:
            raise ApiError(400, f"`input` is {len(text)} characters; the limit is {limits.MAX_SPEECH_INPUT_CHARS}.", "input",
                           "string_above_max_length")
        fmt = _string(body, "response_format") or "mp3"
        if fmt not in MIME:
            raise ApiError(400, f"`response_format` must be one of {', '.join(MIME)}.", "response_format", "invalid_value")
        speed = body.get("speed", 1.0)
        if isinstance(speed, bool) or not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0:
            raise ApiError(400, "`speed` must be a number from 0.25 to 4.0.", "speed", "invalid_value")
        voice = self._voice(_string(body, "voice", required=True))
        audio = await anyio.to_thread.run_sync(self._synthesize, text, voice, float(speed), fmt, limiter=self._threads)
        return Response(audio, media_type=MIME[fmt])

    def _voice(self, voice: str) -> str:
        if self.speech is None:
            raise ApiError(503, "Speech is off in this app (started with --speech off).", code="speech_off")
        try:
            return self.speech.resolve(voice)
        except ValueError:
            raise ApiError(400, f"`voice` {voice!r} is not one of this app's voices: {', '.join(self.speech.voices)} "
                           "(or one of OpenAI's names, which mean the default).", "voice", "invalid_value") from None

    def _synthesize(self, text: str, voice: str, speed: float, fmt: str) -> bytes:
        try:
            parts = list(self.speech.speak(text, voice, speed))
        except SpeechUnavailable as error:
            raise ApiError(503, str(error), code="speech_unavailable") from None
        if not parts:
            raise ApiError(400, "`input` holds nothing that can be spoken.", "input", "invalid_input")
        return encode(np.concatenate([p.samples for p in parts]), parts[0].rate, fmt)

    async def create_transcription(self, request):
        from starlette.responses import JSONResponse, PlainTextResponse

        self.owner(request)
        if request.headers.get("content-type", "").split(";", 1)[0].strip().lower() != "multipart/form-data":
            raise ApiError(415, "Send the request as multipart/form-data with the audio in `file`, as OpenAI's clients do.",
                           code="unsupported_media_type")
        # The form is spooled to disk as it arrives, so its size is known before: a body without a length (chunked)
        # could otherwise fill the disk. HTTP clients, OpenAI's included, send the length of a form they post.
        declared = request.headers.get("content-length", "")
        if not declared.isdigit():
            raise ApiError(411, "Send the form with a Content-Length header.", code="length_required")
        if int(declared) > limits.MAX_FILE_BYTES + (1 << 20):
            raise ApiError(413, f"The file is larger than {limits.MAX_FILE_BYTES / 2**20:.0f} MB, the limit.", "file",
                           "request_too_large")
        try:
            form = await request.form(max_files=1, max_fields=16, max_part_size=1 << 20)
        except Exception as error:  # noqa: BLE001 - Starlette's MultiPartException and kin: a malformed body
            raise ApiError(400, f"The form could not be read: {error}", code="invalid_request") from None
        try:
            return await self._transcription(form, JSONResponse, PlainTextResponse)
        finally:
            await form.close()

    async def _transcription(self, form, json_response, text_response):
        model = _form_text(form, "model", required=True)
        whisper = self.transcriber.label.removeprefix("Whisper ") if self.transcriber is not None else None
        if model not in (*TRANSCRIPTION_MODELS, whisper):
            raise ApiError(404, f"The transcription model {model!r} does not exist here: use whisper-1"
                           + (f" or {whisper!r}" if whisper else "") + ".", "model", "model_not_found")
        fmt = _form_text(form, "response_format") or "json"
        if fmt not in TRANSCRIPT_FORMATS:
            raise ApiError(400, f"`response_format` must be one of {', '.join(TRANSCRIPT_FORMATS)}.", "response_format",
                           "invalid_value")
        language = _language(_form_text(form, "language"))
        prompt = _form_text(form, "prompt")
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise ApiError(400, "`file` is required: the audio to transcribe, as a file part of the form.", "file",
                           "missing_required_parameter")
        if self.transcriber is None:
            raise ApiError(503, "Transcripts are off in this app (started with --whisper-model none).", code="transcription_off")
        data = await upload.read(limits.MAX_FILE_BYTES + 1)
        filename = Path(upload.filename or "audio").name or "audio"
        result = await anyio.to_thread.run_sync(self._transcribe, data, filename, language, prompt, limiter=self._threads)
        if fmt == "text":
            return text_response(result["text"].strip())
        if fmt in ("srt", "vtt"):
            return text_response(_subtitles(result, fmt), media_type="text/plain")
        if fmt == "json":
            return json_response({"text": result["text"].strip()})
        return json_response(_verbose(result))

    def _transcribe(self, data: bytes, filename: str, language: str | None, prompt: str | None) -> dict:
        if len(data) > limits.MAX_FILE_BYTES:
            raise ApiError(413, f"“{filename}” is larger than {limits.MAX_FILE_BYTES / 2**20:.0f} MB, the limit.", "file",
                           "request_too_large")
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.upload_dir) as folder:
            path = Path(folder) / "upload"
            path.write_bytes(data)
            try:
                checked = validate_file(path, filename, self.max_audio_seconds)
                if checked.kind is not MediaKind.AUDIO:
                    raise InvalidInput(t("transcribe.image", name=filename))
                audio = self.decode(path)
            except InvalidInput as error:
                raise ApiError(400, str(error), "file", "invalid_file") from None
            try:
                result = self.transcriber.transcribe_now(audio, language, prompt)
            except ModelLoadError as error:
                raise ApiError(503, str(error), code="model_not_loaded") from None
        result["duration"] = round(len(audio) / 16_000, 2)
        return result


def _object(body: bytes) -> dict:
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ApiError(400, "The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(value, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_request")
    return value


def _string(body: dict, name: str, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"`{name}` must be a string." if value is not None else f"`{name}` is required.", name,
                       "invalid_type" if value is not None else "missing_required_parameter")
    return value


def _form_text(form, name: str, required: bool = False) -> str | None:
    value = form.get(name)
    if value is None or value == "":
        if required:
            raise ApiError(400, f"`{name}` is required.", name, "missing_required_parameter")
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"`{name}` must be text, not a file.", name, "invalid_type")
    return value


def _language(value: str | None) -> str | None:
    """ISO-639-1 ("en", "zh") as OpenAI takes it; Whisper's language names too."""
    if value is None:
        return None
    from whisper.tokenizer import LANGUAGES, TO_LANGUAGE_CODE

    code = value.strip().lower()
    code = TO_LANGUAGE_CODE.get(code, code)
    if code not in LANGUAGES:
        raise ApiError(400, f"`language` {value[:40]!r} is not a language Whisper knows; give its ISO-639-1 code, such as "
                       "en or zh.", "language", "invalid_value")
    return code


def _verbose(result: dict) -> dict:
    from whisper.tokenizer import LANGUAGES

    fields = ("id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob", "compression_ratio", "no_speech_prob")
    return {
        "task": "transcribe",
        "language": LANGUAGES.get(result.get("language") or "", result.get("language") or ""),
        "duration": result["duration"],
        "text": result["text"].strip(),
        "segments": [{k: _finite(s[k]) for k in fields if k in s} for s in result.get("segments", [])],
    }


def _finite(value):
    """JSON has no NaN or infinity (Whisper gives -inf log probabilities for a clip it could make nothing of)."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _subtitles(result: dict, fmt: str) -> str:
    from whisper.utils import WriteSRT, WriteVTT

    out = io.StringIO()
    (WriteSRT if fmt == "srt" else WriteVTT)(".").write_result(result, out)
    return out.getvalue()
