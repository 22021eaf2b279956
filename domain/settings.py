"""Generation settings that travel with a conversation, and what produced an answer; validated with pydantic."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, InstanceOf, PlainSerializer

from domain.i18n import Text
from domain.limits import MAX_NEW_TOKENS_LIMIT, MAX_SYSTEM_PROMPT_CHARS


class GenerationSettings(BaseModel):
    """Per-conversation settings; None means "the app's default" (the model's own, or --max-new-tokens)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    system_prompt: str | None = Field(default=None, max_length=MAX_SYSTEM_PROMPT_CHARS)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)  # 0: greedy, the same answer every time
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_new_tokens: int | None = Field(default=None, ge=1, le=MAX_NEW_TOKENS_LIMIT)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    voice: str | None = Field(default=None, max_length=64)  # who speaks the answers; one the voice lacks: its default


Finish = Literal["finished", "length", "stopped", "error"]

# A sentence for people: a Text, said in the reader's language where it is shown; or plain words (an answer stored
# before its sentences had keys, an import's). As JSON (an export, the API) it is English; storage keeps the key
# (storage.records.stored_details), so the page can say it in any language later.
Sentence = Annotated[InstanceOf[Text] | str, PlainSerializer(str, return_type=str, when_used="json")]


class AnswerDetails(BaseModel):
    """What produced an answer and how it went; shown under the answer."""

    model_config = ConfigDict(frozen=True)

    model: str
    quant: str
    settings: GenerationSettings
    prompt_tokens: int = 0
    cached_tokens: int = 0  # of the prompt, those reused from the conversation's KV cache
    answer_tokens: int = 0
    first_token_s: float | None = None
    tokens_per_s: float | None = None
    finish: Finish = "finished"
    # Earlier items the model did not see because the conversation is longer than its context, for people.
    left_out: tuple[Sentence, ...] = ()
