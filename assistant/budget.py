"""Fit a conversation into the model's context, leaving out the least useful parts first; knows nothing of models.

Order, each step taken only while the prompt is still too long: earlier turns' audio becomes its transcript
(or a short note), oldest first; then earlier turns' images become a short note; then the oldest turns are
dropped (the system prompt and the latest question stay); then the latest question's own audio and images go
the same way; last, its text is cut to its end. So it never fails with a length error. What was left out is
returned in words for the page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from assistant.prompt import Fitting, ModelInput, has_transcript
from domain.types import MediaKind, Message, Role

Step = tuple[Callable[[Fitting], None], str]


def fit(
    history: Sequence[Message],
    build: Callable[[Fitting], ModelInput],
    count: Callable[[ModelInput], int],
    limit: int,
    hears: bool = True,
) -> tuple[ModelInput, list[str]]:
    """(the model input within `limit` tokens as `count` counts them, what was left out).

    `hears`: the model hears audio itself, so a clip left out can still come as its (shorter) transcript.
    """
    fitting = Fitting()
    model_input = build(fitting)
    left_out: list[str] = []
    steps = _steps(history, hears)
    while count(model_input) > limit:
        step = next(steps, None)
        if step is None:
            break  # nothing left to take out: only possible if the limit is below the chat template itself
        apply, description = step
        apply(fitting)
        left_out.append(description)
        model_input = build(fitting)
    return model_input, _merge(left_out)


def _steps(history: Sequence[Message], hears: bool) -> Iterator[Step]:
    last_question = max((i for i, m in enumerate(history) if m.role is Role.USER), default=len(history))
    earlier, latest = history[:last_question], history[last_question:]
    yield from _media_steps(earlier, MediaKind.AUDIO, hears)
    yield from _media_steps(earlier, MediaKind.IMAGE, hears)
    for index, message in enumerate(earlier):
        # Dropping up to the next question keeps the conversation starting with a question.
        if message.role is Role.USER and index > 0:
            yield _drop_before(index), "earlier messages"
    if earlier:
        yield _drop_before(last_question), "earlier messages"
    yield from _media_steps(latest, MediaKind.AUDIO, hears)
    yield from _media_steps(latest, MediaKind.IMAGE, hears)
    text = history[last_question].text if last_question < len(history) else ""
    for keep in (len(text) // 2, len(text) // 4, len(text) // 16, 0):
        if keep < len(text):
            yield _cut_text(keep), "the start of the message"


def _media_steps(messages: Sequence[Message], kind: MediaKind, hears: bool) -> Iterator[Step]:
    for message in messages:
        for position, attachment in enumerate(message.attachments):
            if attachment.kind is not kind:
                continue
            key = (message.id, position)
            if kind is MediaKind.AUDIO:
                how = " (as its transcript)" if hears and has_transcript(attachment) else ""
                yield _add(lambda f: f.audio_as_text, key), f"the audio “{attachment.filename}”{how}"
            else:
                yield _add(lambda f: f.images_as_notes, key), f"the image “{attachment.filename}”"


def _add(which: Callable[[Fitting], set], key: tuple[int, int]) -> Callable[[Fitting], None]:
    return lambda fitting: which(fitting).add(key)


def _drop_before(index: int) -> Callable[[Fitting], None]:
    def apply(fitting: Fitting) -> None:
        fitting.first_message = max(fitting.first_message, index)

    return apply


def _cut_text(keep: int) -> Callable[[Fitting], None]:
    def apply(fitting: Fitting) -> None:
        fitting.last_text_chars = keep

    return apply


def _merge(left_out: list[str]) -> list[str]:
    """Repeated descriptions once, in order ("earlier messages" is one item however many turns went)."""
    return list(dict.fromkeys(left_out))
