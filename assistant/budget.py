"""Fit a conversation into the model's context, leaving out the least useful parts first; knows nothing of models.

Order, each step taken only while the prompt is still too long: earlier turns' audio becomes its transcript
(or a short note), oldest first; earlier turns' videos get fewer frames (halved, down to a few), or, for a family
that times frames by a fixed rate (Qwen2.5-Omni), smaller ones (halved in pixels, down to the processor's floor);
then earlier turns' images, then their videos, become a short note; then the oldest turns are dropped (the system
prompt and the latest question stay); then the latest question's own audio, videos and images go the same way;
last, its text is cut to its end. So it never fails with a length error. What was left out is returned as
sentences for the page (Texts, said in the reader's language where they are shown).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from assistant.prompt import Fitting, ModelInput, has_transcript
from domain.i18n import Text, t
from domain.types import Attachment, MediaKind, Message, Role

# (what it changes, how the page says what the model did not see, which item it is about). A video's fewer frames are
# said once they are known (a callable on the new input); a later step about the same item replaces its line.
Step = tuple[Callable[[Fitting], None], "Text | Callable[[ModelInput], Text]", str]

FEWEST_FRAMES = 4  # a video is left out rather than shown in fewer frames than this
# A fixed-rate family's frames are shrunk in as many halvings as the 64-frame cap has down to FEWEST_FRAMES; below
# the processor's own floor (assistant.video.VIDEO_MIN_PIXELS) a step changes nothing and is passed over.
SHRINK_STEPS = (2, 4, 8, 16)
EARLIER_MESSAGES = t("budget.earlier_messages")


def fit(
    history: Sequence[Message],
    build: Callable[[Fitting], ModelInput],
    count: Callable[[ModelInput], int],
    limit: int,
    hears: bool = True,
    max_frames: int = 64,
    fixed_rate: bool = False,
) -> tuple[ModelInput, list[Text]]:
    """(the model input within `limit` tokens as `count` counts them, what was left out).

    `hears`: the model hears audio itself, so a clip left out can still come as its (shorter) transcript.
    `max_frames`: the most frames the model gets of one video (its family's cap), halved while too long.
    `fixed_rate`: the family times frames at its rate (Capabilities.fixed_video_rate): their size is halved instead.
    """
    fitting = Fitting()
    model_input = build(fitting)
    left_out: dict[str, Text] = {}
    steps = _steps(history, hears, max_frames, fixed_rate)
    while count(model_input) > limit:
        step = next(steps, None)
        if step is None:
            break  # nothing left to take out: only possible if the limit is below the chat template itself
        apply, description, what = step
        shapes = _shapes(model_input)
        apply(fitting)
        model_input = build(fitting)
        if callable(description):
            if _shapes(model_input) == shapes:
                continue  # a short clip already had fewer (or small enough) frames: nothing changed, nothing to count
            description = description(model_input)
        if left_out.get(what) != description:
            left_out.pop(what, None)
            left_out[what] = description
    return model_input, list(left_out.values())


def _shapes(model_input: ModelInput) -> list[tuple[int, ...]]:
    return [clip.frames.shape for clip in model_input.videos]


def _steps(history: Sequence[Message], hears: bool, max_frames: int, fixed_rate: bool) -> Iterator[Step]:
    last_question = max((i for i, m in enumerate(history) if m.role is Role.USER), default=len(history))
    earlier, latest = history[:last_question], history[last_question:]
    for messages in (earlier, latest):
        if messages is latest and earlier:
            yield _drop_before(last_question), EARLIER_MESSAGES, "earlier messages"
        yield from _media_steps(messages, MediaKind.AUDIO, hears)
        yield from (_smaller_frames(messages) if fixed_rate else _fewer_frames(messages, max_frames))
        yield from _media_steps(messages, MediaKind.IMAGE, hears)
        yield from _media_steps(messages, MediaKind.VIDEO, hears)
        if messages is earlier:
            for index, message in enumerate(earlier):
                # Dropping up to the next question keeps the conversation starting with a question.
                if message.role is Role.USER and index > 0:
                    yield _drop_before(index), EARLIER_MESSAGES, "earlier messages"
    text = history[last_question].text if last_question < len(history) else ""
    for keep in (len(text) // 2, len(text) // 4, len(text) // 16, 0):
        if keep < len(text):
            yield _cut_text(keep), t("budget.message_start"), "the start of the message"


def _media_steps(messages: Sequence[Message], kind: MediaKind, hears: bool) -> Iterator[Step]:
    for message in messages:
        for position, attachment in enumerate(message.attachments):
            if attachment.kind is not kind:
                continue
            key = (message.id, position)
            what = f"{kind.value} {key}"
            if kind is MediaKind.AUDIO:
                as_transcript = hears and has_transcript(attachment)
                said = t("budget.audio_as_transcript" if as_transcript else "budget.audio", name=attachment.filename)
                yield _add(lambda f: f.audio_as_text, key), said, what
            elif kind is MediaKind.VIDEO:
                yield _add(lambda f: f.videos_as_notes, key), t("budget.video", name=attachment.filename), what
            else:
                yield _add(lambda f: f.images_as_notes, key), t("budget.image", name=attachment.filename), what


def _fewer_frames(messages: Sequence[Message], max_frames: int) -> Iterator[Step]:
    """Each video in fewer frames, halved each step down to FEWEST_FRAMES."""
    for message in messages:
        for position, attachment in enumerate(message.attachments):
            if attachment.kind is not MediaKind.VIDEO:
                continue
            key = (message.id, position)
            frames = max_frames // 2
            while frames >= FEWEST_FRAMES:
                yield _set_frames(key, frames), _said_frames(attachment), f"video {key}"
                frames //= 2


def _smaller_frames(messages: Sequence[Message]) -> Iterator[Step]:
    """Each video of a fixed-rate family in smaller frames, all of them still there (its frames pair with its sound
    by their count): halved in pixels each step."""
    for message in messages:
        for position, attachment in enumerate(message.attachments):
            if attachment.kind is not MediaKind.VIDEO:
                continue
            key = (message.id, position)
            for shrink in SHRINK_STEPS:
                yield _set_shrink(key, shrink), _said_size(attachment), f"video {key}"


def _set_shrink(key: tuple[int, int], shrink: int) -> Callable[[Fitting], None]:
    def apply(fitting: Fitting) -> None:
        fitting.video_shrink[key] = shrink

    return apply


def _set_frames(key: tuple[int, int], frames: int) -> Callable[[Fitting], None]:
    def apply(fitting: Fitting) -> None:
        fitting.video_frames[key] = frames

    return apply


def _said_frames(attachment: Attachment) -> Callable[[ModelInput], Text]:
    def say(model_input: ModelInput) -> Text:
        clip = _clip_of(model_input, attachment)
        seen = len(clip.frames) if clip is not None else "?"
        return t("budget.video_frames", name=attachment.filename, seen=seen)

    return say


def _said_size(attachment: Attachment) -> Callable[[ModelInput], Text]:
    def say(model_input: ModelInput) -> Text:
        clip = _clip_of(model_input, attachment)
        seen = "{2}×{1}".format(*clip.frames.shape) if clip is not None else "?"
        return t("budget.video_detail", name=attachment.filename, seen=seen)

    return say


def _clip_of(model_input: ModelInput, attachment: Attachment):
    """The clip of this attachment in the input (the first, should the same file be attached twice)."""
    for key, clip in zip(model_input.video_keys, model_input.videos):
        if key.startswith(attachment.sha256 + "@"):
            return clip
    return None


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
