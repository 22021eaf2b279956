"""Spoken answers in `/v1/chat/completions` (`modalities: ["text", "audio"]`): what `audio` asks for, OpenAI's
`message.audio` for a whole answer, `delta.audio` for a streamed one, and keeping what was said with the answer.
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from assistant.audio_encode import encode, pcm16
from assistant.speech import Speech, StreamSpeaker, speakable
from domain.errors import AssistantError
from domain.types import Message, Status

if TYPE_CHECKING:
    from assistant.dialogue import DialogueManager

log = logging.getLogger(__name__)

# How long a client may refer to a spoken answer by its id, as OpenAI says it (the sound itself is kept with the answer).
AUDIO_EXPIRES_S = 3600
# The longest the end of a streamed answer waits for its last sentences to be spoken.
SPEAKING_WAIT_S = 300.0


@dataclass(frozen=True)
class AudioOut:
    """A spoken answer, as `audio` asks for it."""

    voice: str
    format: str  # one of AUDIO_FORMATS


# OpenAI's names for the formats of a spoken answer -> ours (assistant.audio_encode)
AUDIO_FORMATS = {"wav": "wav", "mp3": "mp3", "flac": "flac", "opus": "opus", "aac": "aac", "pcm16": "pcm"}


def whole_audio(dialogue: DialogueManager, message: Message, voice: str, fmt: str) -> dict | None:
    """OpenAI's `message.audio` for a finished answer, spoken now and kept; None (logged) when it cannot be: the
    text answer still goes out."""
    try:
        spoken = dialogue.speak(message.id, voice)
    except AssistantError as error:
        log.warning("answer %s is not spoken: %s", message.id, error)
        return None
    except Exception:  # noqa: BLE001 - the voice's own failure: the stored text answer still goes out
        log.exception("speaking answer %s failed", message.id)
        return None
    return {
        "id": f"audio_{spoken.message.speech.sha256[:32]}",
        "data": base64.b64encode(encode(spoken.samples, spoken.rate, AUDIO_FORMATS[fmt])).decode(),
        "expires_at": int(time.time()) + AUDIO_EXPIRES_S,
        "transcript": speakable(message.text),
    }


def keep_streamed(dialogue: DialogueManager, message: Message, speaker: StreamSpeaker) -> None:
    """What a voice said while the answer streamed, kept as its spoken form when it said all of a finished answer
    (not when the client left, the voice failed or the wait ran out: a cut-short sound would be kept for good)."""
    if speaker.error is not None:
        log.warning("answer %s was not spoken: %s", message.id, speaker.error)
    if not speaker.complete or message.status is not Status.COMPLETE:
        return
    parts = speaker.parts
    try:
        dialogue.keep_speech(message.id, parts)
    except AssistantError as kept:
        log.warning("the spoken form of answer %s was not kept: %s", message.id, kept)


def audio_delta(completion_id: str, created: int, speech: Speech) -> dict:
    """One piece of a streamed spoken answer, as OpenAI's `delta.audio`."""
    return {
        "id": f"audio_{completion_id.removeprefix('chatcmpl-')}",
        "data": base64.b64encode(pcm16(speech.samples, speech.rate)).decode(),
        "transcript": speech.text,
        "expires_at": created + AUDIO_EXPIRES_S,
    }
