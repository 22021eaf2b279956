"""`GET /v1/models` and `POST /v1/chat/completions`, OpenAI's protocol over the same dialogue manager as the page.

Every exchange is stored as a conversation of the key's owner. The protocol is stateless, so a request whose
earlier messages are exactly a path (any branch) of one of that owner's conversations continues it there (and
reuses its cached work): clients continuing one conversation at once each make a branch of it. Other history is
stored as a new conversation first. Turns queue with the page's.

A fault of the machine (disk full, database busy or away) is a 503 with Retry-After, a generation server's
failure a 502, anything else of ours a 500.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import anyio

from api import request as parsing
from api import spoken
from api.errors import ApiError
from assistant.continuation import Continuation
from assistant.dialogue import DialogueManager, ReplyDelta, ReplyFinished
from assistant.model_host import ModelHost, Phase
from assistant.speech import Speech, StreamSpeaker
from assistant.validation import validate_turn
from domain import limits
from domain.errors import AssistantError, EngineUnavailable, InvalidInput, ServiceUnavailable
from domain.types import HistoryTurn, Message, Role, Status
from storage import faults
from domain.addresses import is_loopback

log = logging.getLogger(__name__)

_DONE = object()


class ChatApi:
    def __init__(
        self,
        dialogue: DialogueManager,
        host: ModelHost,
        model_id: str,
        accounts: Callable[[], bool],
        user_of_key: Callable[[str | None], int | None],
        upload_dir: Path,
        queue_limit: int = limits.API_QUEUE_LIMIT,
        fetch: Callable[[str, int, str], bytes] | None = None,
    ):
        """`accounts()`: whether users exist (then every request needs a key); `fetch`: http(s) media, or None."""
        self.dialogue = dialogue
        self.host = host
        self.model_id = model_id
        self.accounts = accounts
        self.user_of_key = user_of_key
        self.upload_dir = upload_dir
        self.queue_limit = queue_limit
        self.fetch = fetch
        self.created = int(time.time())
        self._threads = anyio.CapacityLimiter(64)  # non-streamed answers wait in these, not in Starlette's pool

    def routes(self) -> list:
        from starlette.routing import Route

        return [
            Route("/v1/models", guarded(self.models), methods=["GET"]),
            Route("/v1/chat/completions", guarded(self.completions), methods=["POST"]),
        ]

    def owner(self, request) -> int | None:
        header = request.headers.get("authorization", "")
        key = header[7:].strip() if header.lower().startswith("bearer ") else None
        if self.accounts():
            owner = self.user_of_key(key)
            if owner is None:
                raise ApiError(401, "A valid API key is required: create one in the page's Settings, or with "
                               "python run.py apikey create --user NAME.", code="invalid_api_key")
            return owner
        # One local person and no accounts: loopback needs no key, as with Ollama.
        if request.client is None or not is_loopback(request.client.host):
            raise ApiError(401, "Only this machine may use the API while the app has no accounts.", code="invalid_api_key")
        return None

    async def models(self, request):
        from starlette.responses import JSONResponse

        self.owner(request)
        model = {"id": self.model_id, "object": "model", "created": self.created, "owned_by": "local-assistant"}
        engine = self.host.engine
        if engine is not None:
            model["max_model_len"] = engine.context_tokens  # as vLLM says it: a client can budget its prompts
        return JSONResponse({"object": "list", "data": [model]})

    async def completions(self, request):
        owner = self.owner(request)
        require_json(request)
        body = await read_body(request)
        # Off the event loop: JSON and base64 of up to hundreds of MB, and http(s) media (--allow-remote-media).
        chat = await anyio.to_thread.run_sync(_parse, body, self.fetch, limiter=self._threads)
        if chat.model != self.model_id:
            raise ApiError(404, f"The model {chat.model!r} does not exist here; this app serves {self.model_id!r} "
                           "(GET /v1/models).", "model", "model_not_found")
        if self.host.state.phase is Phase.FAILED:
            raise ApiError(503, str(self.host.state.message), code="model_not_loaded")
        queue = self.dialogue.queue
        if len(queue) >= queue.slots + self.queue_limit:  # this one would wait behind `queue_limit` others
            raise ApiError(429, f"The model is busy: {len(queue)} answers are being written or waiting; try again shortly.",
                           code="queue_full", headers={"Retry-After": str(limits.RETRY_AFTER_S)})
        voice = self._voice(chat.audio) if chat.audio is not None else None
        dialogue = self.dialogue.for_owner(owner)
        stop = threading.Event()
        try:
            events = await anyio.to_thread.run_sync(self._start, dialogue, chat, stop, limiter=self._threads)
        except InvalidInput as error:
            raise ApiError(400, str(error), "messages", "invalid_input") from None
        except ServiceUnavailable as error:
            raise service_unavailable(error) from None
        except AssistantError as error:
            raise ApiError(400, str(error), code="invalid_request") from None
        conversation_id, events = events
        headers = {"X-Conversation-Id": conversation_id}
        completion = Completion(f"chatcmpl-{uuid.uuid4().hex}", self.model_id)
        if chat.stream:
            from starlette.responses import StreamingResponse

            body = self._stream(events, stop, completion, chat.include_usage, dialogue if voice else None, voice)
            return StreamingResponse(body, media_type="text/event-stream", headers={**headers, "Cache-Control": "no-cache"})
        from starlette.responses import JSONResponse

        finished = None
        try:
            for event in await anyio.to_thread.run_sync(list, events, limiter=self._threads):
                if isinstance(event, ReplyFinished):
                    finished = event
        finally:
            stop.set()
        if finished is None:
            raise ApiError(500, "The answer failed.", code="generation_failed")
        if finished.message.status is Status.ERROR:
            raise failed_answer(finished)
        whole = completion.whole(finished.message)
        if voice is not None:
            audio = await anyio.to_thread.run_sync(spoken.whole_audio, dialogue, finished.message, voice, chat.audio.format, limiter=self._threads)
            if audio is not None:
                whole["choices"][0]["message"]["audio"] = audio
        return JSONResponse(whole, headers=headers)

    def _voice(self, audio: parsing.AudioOut) -> str:
        """The voice of ours that `audio.voice` names; a 400 naming it otherwise."""
        speech = self.dialogue.speech
        if speech is None:
            raise ApiError(400, "This app does not speak: it was started with --speech off.", "modalities", "speech_off")
        try:
            return speech.resolve(audio.voice)
        except ValueError:
            raise ApiError(400, f"`audio.voice` {audio.voice[:40]!r} is not one of this app's voices: "
                           f"{', '.join(speech.voices)} (or one of OpenAI's names, which mean the default).", "audio.voice",
                           "invalid_value") from None

    def _start(self, dialogue: DialogueManager, chat: parsing.ChatRequest, stop: threading.Event):
        """Store what the request adds (history not stored yet, the question and its files) and start the answer:
        (conversation id, the rest of the turn's events). InvalidInput before anything is saved."""
        with tempfile.TemporaryDirectory(dir=self._upload_root()) as folder:
            folder = Path(folder)
            uploads = _write(chat.question.files, folder / "question")
            after = self._continuation(dialogue, chat, folder, uploads)
            events = dialogue.send(None, chat.question.text, uploads, stop, chat.settings, stop_strings=chat.stop, after=after)
            saved = next(events)  # validation, then the question and its files are stored: the uploads can go
        return saved.conversation.id, events

    def _upload_root(self) -> Path:
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        return self.upload_dir

    def _continuation(
        self, dialogue: DialogueManager, chat: parsing.ChatRequest, folder: Path, uploads
    ) -> Continuation | None:
        """Where the question goes: None (a new conversation), under the stored message this history leads to, or
        under the last message of a new conversation holding the history, which is stored only once the question is
        known to be valid."""
        if not chat.history:
            return None
        signature = [(t.role, t.text, tuple(hashlib.sha256(data).hexdigest() for data, _ in t.files)) for t in chat.history]
        found = dialogue.continuation_of(chat.settings.system_prompt, signature)
        if found is not None:
            return found
        validate_turn(chat.question.text, uploads)
        from assistant.dialogue import make_title

        turns = []
        for i, turn in enumerate(chat.history):
            text, files = turn.text, []
            if turn.files or turn.role is Role.USER:
                # Checked here as a turn's files are (a bad one refuses the request), so stored as they are.
                text, files = validate_turn(turn.text, _write(turn.files, folder / f"history-{i}"))
            turns.append(HistoryTurn(turn.role, text, tuple(files)))
        first = chat.history[0]
        title = make_title(first.text, []) if first.text.strip() else "API conversation"
        conversation_id = dialogue.store_history(turns, title, chat.settings).id
        # Found again by its history, not as the conversation's leaf: another client may already be adding to it.
        return dialogue.continuation_of(chat.settings.system_prompt, signature, within=conversation_id)

    async def _stream(
        self, events, stop: threading.Event, completion: Completion, include_usage: bool, speaking=None, voice=None
    ):
        """With `speaking` (the owner's dialogue manager) the answer is spoken in `voice` as it streams: each sentence's
        pcm16 follows its text, as `delta.audio`, and the whole is kept as the answer's spoken form."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def put(item) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the server is shutting down
                pass

        def work() -> None:
            speaker = StreamSpeaker(speaking.speech, voice, put, stop) if speaking is not None else None
            try:
                for event in events:  # runs to the end even if the client left: the answer is stored as stopped
                    if speaker is not None and isinstance(event, ReplyDelta):
                        speaker.feed(event.text)
                    elif speaker is not None and isinstance(event, ReplyFinished):
                        speaker.finish(event.message.text, spoken.SPEAKING_WAIT_S)
                        spoken.keep_streamed(speaking, event.message, speaker)
                    put(event)
            except BaseException as error:  # noqa: BLE001 - reported to the client below
                put(error)
            finally:
                if speaker is not None and not speaker.wait(0):  # the answer failed: nothing more is spoken
                    stop.set()
                    speaker.close("")
                put(_DONE)

        threading.Thread(target=work, name="api-answer", daemon=True).start()
        sent = 0
        try:
            yield completion.chunk({"role": "assistant", "content": ""}, usage=include_usage)
            while (event := await queue.get()) is not _DONE:
                if isinstance(event, BaseException):
                    log.error("API answer failed", exc_info=event)
                    yield _sse(ApiError(500, "The answer failed.", code="generation_failed").body())
                    return
                if isinstance(event, Speech):
                    yield completion.chunk({"audio": spoken.audio_delta(completion.id, completion.created, event)}, usage=include_usage)
                elif isinstance(event, ReplyDelta) and len(event.text) > sent:
                    yield completion.chunk({"content": event.text[sent:]}, usage=include_usage)
                    sent = len(event.text)
                elif isinstance(event, ReplyFinished):
                    message = event.message
                    if message.status is Status.ERROR:
                        yield _sse(failed_answer(event).body())
                        return
                    if len(message.text) > sent:
                        yield completion.chunk({"content": message.text[sent:]}, usage=include_usage)
                    yield completion.chunk({}, finish_reason(message), usage=include_usage)
                    if include_usage:
                        yield _sse({**completion.base("chat.completion.chunk"), "choices": [], "usage": usage(message)})
            yield "data: [DONE]\n\n"
        finally:
            stop.set()  # the client went away (or all was sent): end the answer within a token


def guarded(handler):
    """The route `handler` with its failures answered in OpenAI's shape: ours as 500 (logged), the machine's as 503."""
    async def endpoint(request):
        try:
            return await handler(request)
        except ApiError as error:
            return error.response()
        except Exception as error:
            unavailable = faults.classify(error)  # a full disk while writing the request's files, say
            if unavailable is not None:
                log.warning("API request refused: %s", unavailable, exc_info=error)
                return service_unavailable(unavailable).response()
            log.exception("API request failed")  # a fault of ours: logged with its traceback, answered without it
            return ApiError(500, "The server failed while handling the request.", code="server_error").response()

    return endpoint


def service_unavailable(error: ServiceUnavailable) -> ApiError:
    return ApiError(503, str(error), code="service_unavailable", headers={"Retry-After": str(error.retry_after_s)})


def failed_answer(finished: ReplyFinished) -> ApiError:
    """An answer that ended in an error, by whose fault: the generation server's (502), the machine's (503), ours."""
    failure, message = finished.failure, str(finished.message.error or "The answer failed.")  # English, as the API speaks
    if isinstance(failure, EngineUnavailable):
        return ApiError(502, message, code="engine_unavailable")
    if isinstance(failure, ServiceUnavailable):
        return service_unavailable(failure)
    return ApiError(500, message, code="generation_failed")


class Completion:
    def __init__(self, completion_id: str, model: str):
        self.id = completion_id
        self.model = model
        self.created = int(time.time())

    def base(self, kind: str) -> dict:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model, "system_fingerprint": None}

    def chunk(self, delta: dict, finish: str | None = None, usage: bool = False) -> str:
        body = {**self.base("chat.completion.chunk"), "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if usage:
            body["usage"] = None
        return _sse(body)

    def whole(self, message: Message) -> dict:
        choice = {"index": 0, "message": {"role": "assistant", "content": message.text, "refusal": None},
                  "logprobs": None, "finish_reason": finish_reason(message)}
        return {**self.base("chat.completion"), "choices": [choice], "usage": usage(message)}


def finish_reason(message: Message) -> str:
    return "length" if message.details is not None and message.details.finish == "length" else "stop"


def usage(message: Message) -> dict:
    """OpenAI's usage, with the prompt tokens a kept KV cache held as `cached_tokens`."""
    details = message.details
    prompt = details.prompt_tokens if details else 0
    answer = details.answer_tokens if details else 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": answer,
        "total_tokens": prompt + answer,
        "prompt_tokens_details": {"cached_tokens": details.cached_tokens if details else 0},
    }


# Characters that JSON leaves as they are but that str.splitlines() (httpx's iter_lines, many SSE readers) takes for
# line ends: escaped, so an event is always one line.
_LINE_BREAKING = str.maketrans({c: f"\\u{ord(c):04x}" for c in "\u2028\u2029\x85"})  # JSON escapes the rest


def _sse(body: dict) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False).translate(_LINE_BREAKING)}\n\n"


def _write(files: list[tuple[bytes, str]], folder: Path) -> list[tuple[Path, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    uploads = []
    for i, (data, name) in enumerate(files):
        path = folder / f"{i}-{name}"
        path.write_bytes(data)
        uploads.append((path, name))
    return uploads


async def read_body(request, limit: int = limits.MAX_BODY_BYTES) -> bytes:
    """The body, refused (413) as soon as it passes `limit` bytes, declared or sent."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


def require_json(request) -> None:
    """Only JSON bodies: a web page can send text/plain or form bodies to any site without asking (no CORS preflight),
    so accepting them would let other sites run the model and write conversations through a visitor's browser."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(415, "Send the request body as JSON, with the header Content-Type: application/json.",
                       code="unsupported_media_type")


def _parse(body: bytes, fetch) -> parsing.ChatRequest:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "The request body is not valid JSON.", code="invalid_json") from None
    except RecursionError:  # [[[[…]]]] millions deep: valid JSON no chat request needs
        raise ApiError(400, "The request body's JSON is nested too deeply.", code="invalid_json") from None
    return parsing.parse(value, fetch)


def _too_large(limit: int = limits.MAX_BODY_BYTES) -> ApiError:
    if limit != limits.MAX_BODY_BYTES:
        return ApiError(413, f"The request is larger than {limit // 2**10} KB, the limit.", code="request_too_large")
    return ApiError(413, f"The request is larger than {limits.MAX_BODY_BYTES // 2**20} MB; files are limited to "
                    f"{limits.MAX_FILE_BYTES // 2**20} MB each.", code="request_too_large")
