"""Turn stored history into the model's chat format plus its media, in order; knows nothing of models."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from assistant.media import MediaLoader
from assistant.validation import check_image_shape
from domain.errors import InvalidInput
from domain.types import Attachment, MediaKind, Message, Role, Status

log = logging.getLogger(__name__)


@dataclass
class ModelInput:
    """A conversation in the Qwen2.5-Omni chat format, with the images and audio its placeholders stand for."""

    conversation: list[dict]
    images: list = field(default_factory=list)
    audios: list[np.ndarray] = field(default_factory=list)


def unreadable_note(attachment: Attachment) -> str:
    return f"[The {attachment.kind.value} “{attachment.filename}” attached here can no longer be read, so it is left out.]"


def build_model_input(history: Sequence[Message], media: MediaLoader, system_prompt: str | None = None) -> ModelInput:
    """Every earlier turn goes in, its images and audio included; answers that produced no text are left out.

    A stored file that can no longer be read (deleted, corrupted on disk, saved before a check existed)
    becomes a short note to the model, so one bad file never breaks its conversation.
    """
    result = ModelInput(conversation=[])
    if system_prompt:
        result.conversation.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    for message in history:
        if message.role is Role.ASSISTANT and (message.status is Status.STREAMING or not message.text):
            continue
        content: list[dict] = []
        for attachment in message.attachments:
            try:
                if attachment.kind is MediaKind.IMAGE:
                    image = media.image(attachment.path, attachment.filename)
                    check_image_shape(image.width, image.height, attachment.filename)
                    result.images.append(image)
                    content.append({"type": "image"})
                else:
                    result.audios.append(media.audio(attachment.path))
                    content.append({"type": "audio"})
            except InvalidInput as error:
                log.warning("left out of the prompt: %s", error)
                content.append({"type": "text", "text": unreadable_note(attachment)})
        if message.text:
            content.append({"type": "text", "text": message.text})
        result.conversation.append({"role": message.role.value, "content": content})
    return result
