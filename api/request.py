"""A chat completion request, read and checked: OpenAI's message shapes become our turns and settings.

Content parts: `text`; `image_url` (data URLs; http(s) only with --allow-remote-media); `input_audio` (OpenAI's
shape: base64 wav or mp3) and `audio_url` with a data URL (SGLang's). What we cannot honour gets a 400 that
names the parameter, rather than being ignored.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import ValidationError

from api.errors import ApiError, unsupported
from domain import limits
from domain.settings import GenerationSettings
from domain.types import Role

MAX_STOP_STRINGS = 4
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[\w.+-]+)*)(;base64)?,", re.I)
_EXTENSIONS = {"image/jpeg": "jpg", "image/svg+xml": "svg", "audio/mpeg": "mp3", "audio/x-wav": "wav", "audio/wave": "wav"}


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


def parse(body: object, fetch: Callable[[str, int, str], bytes] | None) -> ChatRequest:
    """`fetch(url, limit, param)` gets an http(s) media URL; None: such URLs are refused."""
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    _refuse_unsupported(body)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "`model` is required.", "model", "missing_required_parameter")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "`messages` must be a non-empty list.", "messages", "missing_required_parameter")
    system: list[str] = []
    turns: list[Turn] = []
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            raise ApiError(400, f"`{param}` must be an object.", param)
        role = message.get("role")
        if role in ("system", "developer"):
            text, files = _content(message.get("content"), param, fetch)
            if files:
                raise ApiError(400, "A system message can hold only text.", f"{param}.content")
            system.append(text)
        elif role in ("user", "assistant"):
            if message.get("tool_calls") or message.get("function_call"):
                raise unsupported(f"{param}.tool_calls", "tools and function calling")
            text, files = _content(message.get("content"), param, fetch)
            if role == "assistant" and files:
                raise ApiError(400, "An assistant message can hold only text.", f"{param}.content")
            turns.append(Turn(Role(role), text, files))
        elif role in ("tool", "function"):
            raise unsupported(f"{param}.role", "tools and function calling")
        else:
            raise ApiError(400, f"`{param}.role` must be system, developer, user or assistant.", f"{param}.role")
    if not turns or turns[-1].role is not Role.USER:
        raise ApiError(400, "The last message must be the user's.", "messages")
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise ApiError(400, "`stream_options` must be an object.", "stream_options")
    return ChatRequest(
        model=model,
        history=turns[:-1],
        question=turns[-1],
        settings=_settings(body, "\n\n".join(system) if system else None),
        stop=_stop(body.get("stop")),
        stream=bool(body.get("stream")),
        include_usage=bool(stream_options.get("include_usage")),
    )


def _refuse_unsupported(body: dict) -> None:
    n = body.get("n")
    if n not in (None, 1):
        raise unsupported("n", "one answer per request")
    for name in ("tools", "functions"):
        if body.get(name):
            raise unsupported(name, "tools and function calling")
    if body.get("tool_choice") not in (None, "none"):
        raise unsupported("tool_choice", "tools and function calling")
    if body.get("function_call") not in (None, "none"):
        raise unsupported("function_call", "tools and function calling")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise unsupported("logprobs" if body.get("logprobs") else "top_logprobs", "log probabilities")
    response_format = body.get("response_format")
    if response_format not in (None, {"type": "text"}):
        raise unsupported("response_format", "only plain text answers")
    modalities = body.get("modalities") or []
    if not isinstance(modalities, list):
        raise ApiError(400, "`modalities` must be a list, e.g. [\"text\"].", "modalities", "invalid_value")
    if [m for m in modalities if m != "text"] or body.get("audio"):
        raise unsupported("modalities" if body.get("modalities") else "audio", "answers are text")
    for name in ("presence_penalty", "frequency_penalty"):
        if body.get(name) not in (None, 0, 0.0):
            raise unsupported(name, "no repetition penalties")
    if body.get("logit_bias"):
        raise unsupported("logit_bias", "no logit bias")


def _settings(body: dict, system: str | None) -> GenerationSettings:
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    values = {"system_prompt": system, "temperature": body.get("temperature"), "top_p": body.get("top_p"),
              "max_new_tokens": max_tokens, "seed": body.get("seed")}
    try:
        return GenerationSettings(**values)
    except ValidationError as error:
        first = error.errors()[0]
        name = {"max_new_tokens": "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens",
                "system_prompt": "messages"}.get(str(first["loc"][0]), str(first["loc"][0]))
        raise ApiError(400, f"`{name}`: {first['msg']}.", name, "invalid_value") from None


def _stop(value) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops) or len(stops) > MAX_STOP_STRINGS:
        raise ApiError(400, f"`stop` must be a string or a list of at most {MAX_STOP_STRINGS} strings.", "stop", "invalid_value")
    return tuple(s for s in stops if s)


def _content(content, param: str, fetch) -> tuple[str, list[tuple[bytes, str]]]:
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise ApiError(400, f"`{param}.content` must be a string or a list of parts.", f"{param}.content")
    texts: list[str] = []
    files: list[tuple[bytes, str]] = []
    for j, part in enumerate(content):
        where = f"{param}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url":
            url = _url(part.get("image_url"), where)
            data, mime = _media(url, where, fetch)
            files.append((data, f"image-{len(files) + 1}.{_extension(mime, 'png')}"))
        elif kind == "input_audio":
            audio = part.get("input_audio")
            if not isinstance(audio, dict) or not isinstance(audio.get("data"), str):
                raise ApiError(400, f"`{where}.input_audio` needs base64 `data` and a `format`.", f"{where}.input_audio")
            audio_format = audio.get("format")
            if audio_format not in ("wav", "mp3"):
                raise ApiError(400, f"`{where}.input_audio.format` must be wav or mp3.", f"{where}.input_audio.format")
            files.append((_base64(audio["data"], where), f"audio-{len(files) + 1}.{audio_format}"))
        elif kind == "audio_url":
            url = _url(part.get("audio_url"), where)
            data, mime = _media(url, where, fetch)
            files.append((data, f"audio-{len(files) + 1}.{_extension(mime, 'wav')}"))
        else:
            raise ApiError(400, f"`{where}.type` must be text, image_url, input_audio or audio_url.", f"{where}.type")
    return "\n".join(texts), files


def _url(value, where: str) -> str:
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url:
        raise ApiError(400, f"`{where}` needs a `url`.", where)
    return url


def _media(url: str, where: str, fetch) -> tuple[bytes, str]:
    match = _DATA_URL.match(url)
    if match:
        if not match[3]:
            raise ApiError(400, "A media data URL must be base64 (data:TYPE;base64,…).", where, "invalid_url")
        return _base64(url[match.end():], where), (match[1] or "").lower()
    if url.lower().startswith(("http://", "https://")):
        if fetch is None:
            raise ApiError(400, "Media must come as data: URLs; http(s) URLs need the app started with "
                           "--allow-remote-media.", where, "invalid_url")
        return fetch(url, limits.MAX_FILE_BYTES, where), ""
    raise ApiError(400, "A media URL must be a data: URL (or http(s) with --allow-remote-media).", where, "invalid_url")


def _base64(data: str, where: str) -> bytes:
    if len(data) > (limits.MAX_FILE_BYTES * 4) // 3 + 8:
        raise ApiError(413, f"A file is larger than {limits.MAX_FILE_BYTES // 2**20} MB.", where, "file_too_large")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "The file's base64 data is not valid.", where, "invalid_base64") from None


def _extension(mime: str, default: str) -> str:
    if mime in _EXTENSIONS:
        return _EXTENSIONS[mime]
    subtype = mime.split("/", 1)[-1] if "/" in mime else ""
    return subtype if re.fullmatch(r"[a-z0-9]{1,8}", subtype) else default
