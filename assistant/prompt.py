"""Turn stored history into the model's chat format plus its media, in order; knows nothing of models."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from assistant.media import MediaLoader
from assistant.types import MediaKind, Message, Role, Status


@dataclass
class ModelInput:
    """A conversation in the Qwen2.5-Omni chat format, with the images and audio its placeholders stand for."""

    conversation: list[dict]
    images: list = field(default_factory=list)
    audios: list[np.ndarray] = field(default_factory=list)


def build_model_input(history: Sequence[Message], media: MediaLoader, system_prompt: str | None = None) -> ModelInput:
    """Every earlier turn goes in, its images and audio included; answers that produced no text are left out."""
    result = ModelInput(conversation=[])
    if system_prompt:
        result.conversation.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    for message in history:
        if message.role is Role.ASSISTANT and (message.status is Status.STREAMING or not message.text):
            continue
        content: list[dict] = []
        for attachment in message.attachments:
            if attachment.kind is MediaKind.IMAGE:
                content.append({"type": "image"})
                result.images.append(media.image(attachment.path))
            else:
                content.append({"type": "audio"})
                result.audios.append(media.audio(attachment.path))
        if message.text:
            content.append({"type": "text", "text": message.text})
        result.conversation.append({"role": message.role.value, "content": content})
    return result
