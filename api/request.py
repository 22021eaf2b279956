"""A chat completion request, read and checked: OpenAI's message shapes become our turns and settings.

Content parts: `text`; `image_url` and `video_url` (vLLM's and SGLang's name; data URLs, http(s) only with
--allow-remote-media); `input_audio` (OpenAI's shape: base64 wav or mp3); `audio_url` with a data URL (SGLang's).
What we cannot honour gets a 400 naming the parameter, rather than being ignored; unknown fields are ignored.

The body's shape is checked by the pydantic models below (`ChatBody`); the first fault they find becomes the
ApiError a client sees (`_refusal`). Then the media are decoded (or fetched) and the settings checked.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from api.errors import ApiError, unsupported
from api.spoken import AUDIO_FORMATS, AudioOut
from domain import limits
from domain.settings import GenerationSettings
from domain.types import Role

_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[\w.+-]+)*)(;base64)?,", re.I)
_EXTENSIONS = {"image/jpeg": "jpg", "image/svg+xml": "svg", "audio/mpeg": "mp3", "audio/x-wav": "wav", "audio/wave": "wav",
               "video/quicktime": "mov", "video/x-matroska": "mkv"}
_ROLES = ("system", "developer", "user", "assistant")
_TOOLS = "tools and function calling"


@dataclass
class Turn:
    role: Role
    text: str
    files: list[tuple[bytes, str]] = field(default_factory=list)  # (content, file name)


@dataclass
class ChatRequest:
    model: str
    history: list[Turn]  # the messages before the question
    question: Turn
    settings: GenerationSettings
    stop: tuple[str, ...] = ()
    stream: bool = False
    include_usage: bool = False
    audio: AudioOut | None = None  # a spoken answer too


class _Refused(ValueError):
    """Raised in a validator: the ApiError for the value, given the parameter's name where the fault is."""

    def __init__(self, error: Callable[[str], ApiError]):
        super().__init__("refused")
        self.error = error


def _refuse(error: ApiError) -> _Refused:
    return _Refused(lambda _: error)


# --- the body's shape ---------------------------------------------------------------------------------------


class _Shape(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(_Shape):
    type: Literal["text"]
    text: str


class _MediaUrl(_Shape):
    url: str = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _bare(cls, value):
        return {"url": value} if isinstance(value, str) else value  # a bare URL, as some clients send


class ImagePart(_Shape):
    type: Literal["image_url"]
    image_url: _MediaUrl


class AudioUrlPart(_Shape):
    type: Literal["audio_url"]
    audio_url: _MediaUrl


class VideoUrlPart(_Shape):
    type: Literal["video_url"]
    video_url: _MediaUrl


class _InputAudio(_Shape):
    data: str
    format: Literal["wav", "mp3"]


class InputAudioPart(_Shape):
    type: Literal["input_audio"]
    input_audio: _InputAudio


Part = Annotated[TextPart | ImagePart | InputAudioPart | AudioUrlPart | VideoUrlPart, Field(discriminator="type")]


class ChatMessage(_Shape):
    role: str
    content: list[Part] | None = None

    @model_validator(mode="before")
    @classmethod
    def _role(cls, value):
        if not isinstance(value, dict):
            return value  # not an object: pydantic says so
        role = value.get("role")
        if role in ("tool", "function"):
            raise _Refused(lambda at: unsupported(f"{at}.role", _TOOLS))
        if not isinstance(role, str) or role not in _ROLES:
            raise _Refused(lambda at: ApiError(400, f"`{at}.role` must be system, developer, user or assistant.", f"{at}.role"))
        if role in ("user", "assistant") and (value.get("tool_calls") or value.get("function_call")):
            raise _Refused(lambda at: unsupported(f"{at}.tool_calls", _TOOLS))
        return value

    @field_validator("content", mode="before")
    @classmethod
    def _text(cls, value):
        return [{"type": "text", "text": value}] if isinstance(value, str) else value


class StreamOptions(_Shape):
    include_usage: Any = None


class ChatBody(_Shape):
    """Fields in the order they are checked: the first fault found is the one a client is told of. Those typed Any
    are checked by the validators below (most are there only to be refused) or, for the settings, later."""

    n: Any = None
    tools: Any = None
    functions: Any = None
    tool_choice: Any = None
    function_call: Any = None
    logprobs: Any = None
    top_logprobs: Any = None
    response_format: Any = None
    modalities: Any = None
    audio: Any = Field(default=None, validate_default=True)  # checked even when absent: audio in `modalities` needs it
    presence_penalty: Any = None
    frequency_penalty: Any = None
    logit_bias: Any = None
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream_options: StreamOptions | None = None
    stop: str | Annotated[list[str], Field(max_length=limits.MAX_STOP_STRINGS)] | None = None
    stream: Any = None
    # Checked as GenerationSettings once the system prompt is known (the messages').
    temperature: Any = None
    top_p: Any = None
    max_tokens: Any = None
    max_completion_tokens: Any = None
    seed: Any = None

    @field_validator("n")
    @classmethod
    def _one_answer(cls, value):
        if value not in (None, 1):
            raise _refuse(unsupported("n", "one answer per request"))
        return value

    @field_validator("tools", "functions", "logprobs", "top_logprobs", "logit_bias")
    @classmethod
    def _absent(cls, value, info: ValidationInfo):
        what = {"logprobs": "log probabilities", "top_logprobs": "log probabilities", "logit_bias": "no logit bias"}
        if value:
            raise _refuse(unsupported(info.field_name, what.get(info.field_name, _TOOLS)))
        return value

    @field_validator("tool_choice", "function_call")
    @classmethod
    def _none(cls, value, info: ValidationInfo):
        if value not in (None, "none"):
            raise _refuse(unsupported(info.field_name, _TOOLS))
        return value

    @field_validator("response_format")
    @classmethod
    def _plain_text(cls, value):
        if value not in (None, {"type": "text"}):
            raise _refuse(unsupported("response_format", "only plain text answers"))
        return value

    @field_validator("modalities")
    @classmethod
    def _text_or_audio_out(cls, value):
        if not value:
            return []
        if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
            raise _refuse(ApiError(400, "`modalities` must be a list, e.g. [\"text\"] or [\"text\", \"audio\"].",
                                   "modalities", "invalid_value"))
        if [m for m in value if m not in ("text", "audio")] or "text" not in value:
            raise _refuse(unsupported("modalities", "answers are text, or text and audio"))
        return value

    @field_validator("audio")
    @classmethod
    def _audio_out(cls, value, info: ValidationInfo):
        wanted = "audio" in (info.data.get("modalities") or [])
        if not value:
            if wanted:
                raise _refuse(ApiError(400, "`audio` is required with audio in `modalities`: give its `voice` and `format`.",
                                       "audio", "missing_required_parameter"))
            return None
        if not wanted:
            raise _refuse(ApiError(400, "`audio` asks for a spoken answer, which `modalities` must ask for too: "
                                   "[\"text\", \"audio\"].", "modalities", "invalid_value"))
        if not isinstance(value, dict) or not isinstance(value.get("voice"), str):
            raise _refuse(ApiError(400, "`audio.voice` is required: the voice to speak the answer in.", "audio.voice",
                                   "missing_required_parameter"))
        if value.get("format") not in AUDIO_FORMATS:
            raise _refuse(ApiError(400, f"`audio.format` must be one of {', '.join(AUDIO_FORMATS)}.", "audio.format",
                                   "invalid_value"))
        return AudioOut(value["voice"], value["format"])

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _no_penalty(cls, value, info: ValidationInfo):
        if value not in (None, 0, 0.0):
            raise _refuse(unsupported(info.field_name, "no repetition penalties"))
        return value

    @field_validator("stream_options", mode="before")
    @classmethod
    def _falsy_is_none(cls, value):
        return value or None


# --- from the body to a request -----------------------------------------------------------------------------


def parse(body: object, fetch: Callable[[str, int, str], bytes] | None, max_video_bytes: int | None = None) -> ChatRequest:
    """`fetch(url, limit, param)` gets an http(s) media URL (None: refused); a video may be `max_video_bytes`."""
    try:
        checked = ChatBody.model_validate(body)
    except ValidationError as error:
        raise _refusal(error.errors()[0], body) from None
    system: list[str] = []
    turns: list[Turn] = []
    for i, message in enumerate(checked.messages):
        param = f"messages[{i}]"
        text, files = _content(message.content, param, fetch, max_video_bytes or limits.MAX_VIDEO_BYTES)
        if message.role in ("system", "developer"):
            if files:
                raise ApiError(400, "A system message can hold only text.", f"{param}.content")
            system.append(text)
        else:
            if message.role == "assistant" and files:
                raise ApiError(400, "An assistant message can hold only text.", f"{param}.content")
            turns.append(Turn(Role(message.role), text, files))
    if not turns or turns[-1].role is not Role.USER:
        raise ApiError(400, "The last message must be the user's.", "messages")
    stops = [checked.stop] if isinstance(checked.stop, str) else checked.stop or []
    return ChatRequest(
        model=checked.model,
        history=turns[:-1],
        question=turns[-1],
        settings=_settings(checked, "\n\n".join(system) if system else None),
        stop=tuple(s for s in stops if s),
        stream=bool(checked.stream),
        include_usage=bool(checked.stream_options and checked.stream_options.include_usage),
        audio=_streamable(checked.audio, bool(checked.stream)),
    )


def _streamable(audio: AudioOut | None, stream: bool) -> AudioOut | None:
    if audio is not None and stream and audio.format != "pcm16":
        raise ApiError(400, "A streamed spoken answer comes as raw pcm16, as OpenAI's does: set `audio.format` to pcm16.",
                       "audio.format", "invalid_value")
    return audio


def _refusal(error, body) -> ApiError:
    """The first fault pydantic found, as the ApiError that names its parameter."""
    loc = error["loc"]
    refused = (error.get("ctx") or {}).get("error")
    at = _param(loc)
    if isinstance(refused, _Refused):
        return refused.error(at)
    if not loc:
        return ApiError(400, "The request body must be a JSON object.")
    if loc[0] == "model":
        return ApiError(400, "`model` is required.", "model", "missing_required_parameter")
    if loc[0] == "stream_options":
        return ApiError(400, "`stream_options` must be an object.", "stream_options")
    if loc[0] == "stop":
        message = f"`stop` must be a string or a list of at most {limits.MAX_STOP_STRINGS} strings."
        return ApiError(400, message, "stop", "invalid_value")
    if len(loc) == 1:
        return ApiError(400, "`messages` must be a non-empty list.", "messages", "missing_required_parameter")
    if len(loc) == 2:
        return ApiError(400, f"`{at}` must be an object.", at)
    where = _param(loc[:3])
    if len(loc) == 3:
        return ApiError(400, f"`{where}` must be a string or a list of parts.", where)
    where = _param(loc[:4])
    part = body["messages"][loc[1]]["content"][loc[3]]
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("image_url", "audio_url", "video_url"):
        return ApiError(400, f"`{where}` needs a `url`.", where)
    if kind == "input_audio" and "format" in loc[4:]:
        return ApiError(400, f"`{where}.input_audio.format` must be wav or mp3.", f"{where}.input_audio.format")
    if kind == "input_audio":
        return ApiError(400, f"`{where}.input_audio` needs base64 `data` and a `format`.", f"{where}.input_audio")
    return ApiError(400, f"`{where}.type` must be text, image_url, input_audio, audio_url or video_url.", f"{where}.type")


def _param(loc: tuple) -> str:
    """('messages', 0, 'content', 1) as messages[0].content[1]; a part's union tag (the type) left out."""
    text = ""
    for i, name in enumerate(loc):
        if isinstance(name, int):
            text += f"[{name}]"
        elif not (i == 4 and loc[2] == "content"):
            text += f".{name}" if text else name
    return text


def _settings(checked: ChatBody, system: str | None) -> GenerationSettings:
    given = checked.model_fields_set
    max_tokens = checked.max_completion_tokens if "max_completion_tokens" in given else checked.max_tokens
    values = {"system_prompt": system, "temperature": checked.temperature, "top_p": checked.top_p,
              "max_new_tokens": max_tokens, "seed": checked.seed}
    try:
        return GenerationSettings(**values)
    except ValidationError as error:
        first = error.errors()[0]
        name = {"max_new_tokens": "max_completion_tokens" if "max_completion_tokens" in given else "max_tokens",
                "system_prompt": "messages"}.get(str(first["loc"][0]), str(first["loc"][0]))
        raise ApiError(400, f"`{name}`: {first['msg']}.", name, "invalid_value") from None


def _content(parts: list | None, param: str, fetch, max_video_bytes: int) -> tuple[str, list[tuple[bytes, str]]]:
    texts: list[str] = []
    files: list[tuple[bytes, str]] = []
    for j, part in enumerate(parts or []):
        where = f"{param}.content[{j}]"
        if isinstance(part, TextPart):
            texts.append(part.text)
        elif isinstance(part, ImagePart):
            data, mime = _media(part.image_url.url, where, fetch, limits.MAX_FILE_BYTES)
            files.append((data, f"image-{len(files) + 1}.{_extension(mime, 'png')}"))
        elif isinstance(part, InputAudioPart):
            audio = part.input_audio
            files.append((_base64(audio.data, where, limits.MAX_FILE_BYTES), f"audio-{len(files) + 1}.{audio.format}"))
        elif isinstance(part, VideoUrlPart):
            data, mime = _media(part.video_url.url, where, fetch, max_video_bytes)
            files.append((data, f"video-{len(files) + 1}.{_extension(mime, 'mp4')}"))
        else:
            data, mime = _media(part.audio_url.url, where, fetch, limits.MAX_FILE_BYTES)
            files.append((data, f"audio-{len(files) + 1}.{_extension(mime, 'wav')}"))
    return "\n".join(texts), files


def _media(url: str, where: str, fetch, limit: int) -> tuple[bytes, str]:
    match = _DATA_URL.match(url)
    if match:
        if not match[3]:
            raise ApiError(400, "A media data URL must be base64 (data:TYPE;base64,…).", where, "invalid_url")
        return _base64(url[match.end():], where, limit), (match[1] or "").lower()
    if url.lower().startswith(("http://", "https://")):
        if fetch is None:
            raise ApiError(400, "Media must come as data: URLs; http(s) URLs need the app started with "
                           "--allow-remote-media.", where, "invalid_url")
        return fetch(url, limit, where), ""
    raise ApiError(400, "A media URL must be a data: URL (or http(s) with --allow-remote-media).", where, "invalid_url")


def _base64(data: str, where: str, limit: int) -> bytes:
    if len(data) > (limit * 4) // 3 + 8:
        raise ApiError(413, f"A file is larger than {limit // 2**20} MB.", where, "file_too_large")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "The file's base64 data is not valid.", where, "invalid_base64") from None


def _extension(mime: str, default: str) -> str:
    if mime in _EXTENSIONS:
        return _EXTENSIONS[mime]
    subtype = mime.split("/", 1)[-1] if "/" in mime else ""
    return subtype if re.fullmatch(r"[a-z0-9]{1,8}", subtype) else default
