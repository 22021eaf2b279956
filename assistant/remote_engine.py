"""An engine that sends generation to an OpenAI-compatible server (vLLM, SGLang, `transformers serve`, or another
instance of this app) instead of running a model in-process. Implements assistant.engine_contract.Engine:
`stream` yields text chunks, ends within a chunk once `stop` is set (closing the connection, which aborts the
server's generation), calls `on_finished` when done, and fills in `report`. Every fault of the server raises
EngineUnavailable with a sentence for people; what the server actually said or did goes to the log.

Images go as PNG data URLs and audio as 16 kHz WAV data URLs, decoded and re-encoded the same way each turn, so
a server that caches prefixes (or this app, which continues the stored conversation) sees the same bytes.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
import time
import wave
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

import numpy as np

from assistant.engine_contract import AnswerLength, EngineInfo, GenerationReport
from assistant.families import Capabilities, families
from assistant.media import SAMPLE_RATE
from assistant.prompt import ModelInput
from domain.errors import EngineUnavailable
from domain.i18n import Text, t
from domain.limits import CONNECT_TIMEOUT_S, DEFAULT_MAX_NEW_TOKENS, READ_TIMEOUT_S, SAID_CHARS
from domain.settings import GenerationSettings
from domain.types import MediaKind

log = logging.getLogger(__name__)

AUDIO_PARTS = ("input_audio", "audio_url")  # vLLM takes the first, SGLang only the second
DEFAULT_CONTEXT = 32_768
SSE_FIELDS = ("event:", "id:", "retry:", ":")  # the event-stream lines besides data: ones
# What a prompt costs in tokens, estimated (the server's tokenizer is not at hand): text at about 3 characters a
# token, an image at the cost of a 448×448 one in Qwen's vision tower, audio at Whisper's 25 tokens a second.
CHARS_PER_TOKEN = 3
IMAGE_TOKENS = 256
AUDIO_TOKENS_PER_S = 25


def family_for_model(name: str, accepts: frozenset[MediaKind] | None) -> Capabilities:
    """What the served model takes: its registry family's capabilities when the model's name contains the family's
    name (Qwen/Qwen2.5-Omni-7B -> qwen2.5-omni), with `accepts` (from --engine-accepts) overriding what it takes;
    an unknown name takes text unless told."""

    def squash(text: str) -> str:
        return text.lower().replace("-", "").replace("_", "")

    known = next((f for f in families().values() if squash(f.name) in squash(name)), None)
    if known is None:
        return Capabilities(name="remote", title=name, accepts=accepts or frozenset(), context_tokens=DEFAULT_CONTEXT)
    return replace(known.capabilities, accepts=accepts) if accepts is not None else known.capabilities


class OpenAIEngine(AnswerLength):
    """Generation by an OpenAI-compatible server at `base_url` (…/v1)."""

    voice = None  # answers are spoken by this app's text-to-speech engine

    def __init__(
        self,
        base_url: str,
        model: str,
        family: Capabilities,
        api_key: str | None = None,
        audio_part: str = "input_audio",
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        max_context: int | None = None,
        client=None,
    ):
        import httpx

        if audio_part not in AUDIO_PARTS:
            raise ValueError(f"audio_part must be one of {AUDIO_PARTS}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.family = family
        self.audio_part = audio_part
        self.max_new_tokens = max_new_tokens
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx.Client(
            headers=headers, timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        )
        self.info = EngineInfo(model=model, quant="remote", device=self.base_url)
        context = self._served_context() or family.context_tokens or DEFAULT_CONTEXT
        self.context_tokens = min(context, max_context) if max_context else context

    def _served_context(self) -> int | None:
        """vLLM says each model's context length (max_model_len) in /v1/models; others may not (transformers serve
        answers a 500 there when it has no Hub cache), or may be down."""
        try:
            response = self._client.get(f"{self.base_url}/models", timeout=CONNECT_TIMEOUT_S)
            if response.status_code != 200:
                log.warning("%s/models answered HTTP %s, so the model's context length is its family's",
                            self.base_url, response.status_code)
                return None
            for entry in response.json().get("data", []):
                if entry.get("id") == self.model and isinstance(entry.get("max_model_len"), int):
                    return entry["max_model_len"]
        except Exception as error:  # noqa: BLE001 - only an estimate is lost; turns say what is wrong
            log.warning("could not ask %s for the model's context length: %s", self.base_url, error)
        return None

    def forget(self, conversation_id: str, media: Sequence[str]) -> None:
        """Nothing to drop: the server keeps its own prefix cache, which no conversation names."""

    def prepare_prompt(self, model_input: ModelInput) -> int:
        """An estimate: the server's tokenizer is not at hand (a too-long prompt then gets the server's error)."""
        chars = sum(len(item.get("text", "")) for turn in model_input.conversation for item in _items(turn))
        audio_s = sum(len(a) for a in model_input.audios) / SAMPLE_RATE
        return chars // CHARS_PER_TOKEN + IMAGE_TOKENS * len(model_input.images) + int(AUDIO_TOKENS_PER_S * audio_s) + 8

    def request_body(self, model_input: ModelInput, settings: GenerationSettings, stop_strings=()) -> dict:
        images, audios = iter(model_input.images), iter(model_input.audios)
        messages = []
        for turn in model_input.conversation:
            content = turn["content"]
            if isinstance(content, str):
                messages.append({"role": turn["role"], "content": content})
                continue
            parts = []
            for item in content:
                if item["type"] == "text":
                    parts.append({"type": "text", "text": item["text"]})
                elif item["type"] == "image":
                    parts.append({"type": "image_url", "image_url": {"url": _png_data_url(next(images))}})
                elif item["type"] == "audio":
                    wav = _wav_base64(next(audios))
                    if self.audio_part == "input_audio":
                        parts.append({"type": "input_audio", "input_audio": {"data": wav, "format": "wav"}})
                    else:
                        parts.append({"type": "audio_url", "audio_url": {"url": f"data:audio/wav;base64,{wav}"}})
            if turn["role"] == "system":
                parts = "\n".join(p["text"] for p in parts if p["type"] == "text")
            messages.append({"role": turn["role"], "content": parts})
        body = {
            "model": self.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": self.new_token_limit(settings, self.prepare_prompt(model_input)),
        }
        for name, value in (("temperature", settings.temperature), ("top_p", settings.top_p), ("seed", settings.seed)):
            if value is not None:
                body[name] = value
        if stop_strings:
            body["stop"] = list(stop_strings)
        return body

    def stream(
        self,
        model_input: ModelInput,
        stop: threading.Event,
        on_finished: Callable[[], None] | None = None,
        settings: GenerationSettings | None = None,
        report: GenerationReport | None = None,
        reuse_key: str | None = None,
        stop_strings: tuple[str, ...] = (),
    ) -> Iterator[str]:
        """The answer's text chunks; every failure of the server (unreachable, slow, refusing, breaking the protocol,
        failing or hanging up mid-answer) raises EngineUnavailable, whose message names no internals."""
        import httpx

        settings = settings or GenerationSettings()
        report = report if report is not None else GenerationReport()
        started = time.monotonic()
        body = self.request_body(model_input, settings, stop_strings)
        report.max_new_tokens = body["max_tokens"]
        report.prompt_tokens = self.prepare_prompt(model_input)
        chunks = 0
        try:
            with self._client.stream("POST", f"{self.base_url}/chat/completions", json=body) as response:
                if response.status_code != 200:
                    response.read()
                    raise self._refusal(response)
                for text in self._answer(response, stop, report):
                    report.last_token_s = time.monotonic() - started
                    if report.first_token_s is None:
                        report.first_token_s = report.last_token_s
                    chunks += 1
                    yield text
        except httpx.ConnectError as error:
            raise self._failed(t("engine.unreachable", url=self.base_url), error) from None
        except httpx.TimeoutException as error:
            raise self._failed(t("engine.timeout", url=self.base_url), error) from None
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as error:
            raise self._failed(t("engine.connection_failed", url=self.base_url), error) from None
        finally:
            report.answer_tokens = report.answer_tokens or chunks
            report.seconds = time.monotonic() - started
            if on_finished is not None:
                on_finished()

    def _answer(self, response, stop: threading.Event, report: GenerationReport) -> Iterator[str]:
        """The text of a 200 response's event stream. The answer is whole at `data: [DONE]`, or where the stream ends
        after a choice's finish_reason: transformers serve sends no [DONE] (the openai client needs none either)."""
        finished, events, not_sse = False, 0, None
        for line in response.iter_lines():
            if stop.is_set():
                return  # leaving the stream's block closes the connection: the server aborts the generation
            data = _sse_data(line)
            if data is None:
                if not_sse is None and line.strip() and not line.startswith(SSE_FIELDS):
                    not_sse = line
                continue
            if data == "[DONE]":
                return
            events += 1
            event = self._parse(data)
            if isinstance(event.get("usage"), dict):
                _take_usage(event["usage"], report)
            deltas = _deltas(event)
            if deltas is None:
                raise self._not_protocol(data)
            for text, ends in deltas:
                finished = finished or ends
                if text:
                    yield text
        if finished or stop.is_set():
            return
        if events == 0 and not_sse is not None:
            raise self._not_protocol(not_sse)
        log.warning("engine server %s ended its stream after %d events without finishing the answer", self.base_url, events)
        raise EngineUnavailable(t("engine.hung_up", url=self.base_url))

    def _parse(self, data: str) -> dict:
        try:
            event = json.loads(data)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            raise self._not_protocol(data)
        if event.get("error"):
            log.warning("engine server %s sent an error event: %.2000s", self.base_url, data)
            said = _said_to_clients(event)
            raise EngineUnavailable(_sentence(t("engine.failed", url=self.base_url), said, t("engine.advice.retry")))
        return event

    def _refusal(self, response) -> EngineUnavailable:
        try:
            said = _said_to_clients(response.json())
        except ValueError:
            said = None
        status = response.status_code
        log.warning("engine server %s refused a request with HTTP %s: %.2000s", self.base_url, status, response.text)
        what = t("engine.errored" if status >= 500 else "engine.refused", url=self.base_url, status=status)
        return EngineUnavailable(_sentence(what, said, _refusal_advice(status)))

    def _not_protocol(self, sample: str) -> EngineUnavailable:
        log.warning("engine server %s answered something that is not OpenAI's protocol: %.500r", self.base_url, sample)
        return EngineUnavailable(t("engine.not_openai", url=self.base_url))

    def _failed(self, message: Text, error: Exception) -> EngineUnavailable:
        log.warning("engine server %s: %s: %s", self.base_url, type(error).__name__, error)
        return EngineUnavailable(message)


def _deltas(event: dict) -> list[tuple[str, bool]] | None:
    """Each choice's (text, whether it is the choice's last chunk) in a streamed chunk; None where the chunk is not in
    OpenAI's shape (a usage-only chunk has no choices)."""
    choices = event.get("choices") or []
    if not isinstance(choices, list):
        return None
    deltas = []
    for choice in choices:
        if not isinstance(choice, dict):
            return None
        delta, reason = choice.get("delta") or {}, choice.get("finish_reason")
        text = delta.get("content") if isinstance(delta, dict) else None
        if not isinstance(delta, dict) or not isinstance(text, str | None) or not isinstance(reason, str | None):
            return None
        deltas.append((text or "", reason is not None))
    return deltas


def _said_to_clients(body) -> str | None:
    """The message a server's error body carries for its clients, on one line: OpenAI's shape (vLLM, SGLang, this
    app), vLLM's older flat one, or FastAPI's `detail` (transformers serve). None for anything else, such as a bare
    string, which is often an exception's text."""
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("error"), dict):
        message = body["error"].get("message")
    elif body.get("object") == "error":
        message = body.get("message")
    else:
        message = body.get("detail")
    if not isinstance(message, str) or not message.strip():
        return None
    line = " ".join(message.strip().splitlines()[0].split())
    return line if len(line) <= SAID_CHARS else line[: SAID_CHARS - 1] + "…"


def _sentence(what: Text, said: str | None, advice: Text) -> Text:
    """What the server did, its own words for its clients (untranslated), what to do."""
    if said:
        return t("engine.sentence.said", what=what, said=said.rstrip("."), advice=advice)
    return t("engine.sentence", what=what, advice=advice)


def _refusal_advice(status: int) -> Text:
    if status in (401, 403):
        return t("engine.advice.key")
    if status == 404:
        return t("engine.advice.address")
    if status in (408, 429, 503):
        return t("engine.advice.busy")
    if status >= 500:
        return t("engine.advice.retry")
    return t("engine.advice.log")


def _items(turn: dict) -> list[dict]:
    content = turn["content"]
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _sse_data(line: str) -> str | None:
    return line[5:].strip() if line.startswith("data:") else None


def _png_data_url(image) -> str:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return f"data:image/png;base64,{base64.b64encode(out.getvalue()).decode()}"


def _wav_base64(samples: np.ndarray) -> str:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(SAMPLE_RATE)
        file.writeframes(pcm.tobytes())
    return base64.b64encode(out.getvalue()).decode()


def _take_usage(usage: dict, report: GenerationReport) -> None:
    """The server's token counts, where they are whole numbers (a server may send anything)."""

    def count(value, fallback: int) -> int:
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else fallback

    report.prompt_tokens = count(usage.get("prompt_tokens"), report.prompt_tokens)
    report.answer_tokens = count(usage.get("completion_tokens"), report.answer_tokens)
    details = usage.get("prompt_tokens_details")  # vLLM and SGLang report their prefix cache's share, when asked to
    report.cached_tokens = count(details.get("cached_tokens") if isinstance(details, dict) else None, report.cached_tokens)
