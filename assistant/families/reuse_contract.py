"""How work kept across turns (assistant/reuse.py, assistant/incremental.py) runs one family's model.

The generic path crops a conversation's KV cache, scatters each media item's encoder output over its placeholder
tokens and prefills the rest; a family's `ReuseContract` says what that path cannot know: the rotary positions of a
whole prompt, how one new media item goes through its encoder, how its language model takes the prefill segment,
which processor outputs carry new media, how the incremental processor writes an item already seen, and whether
its model can reuse at all. The defaults fit a decoder with 1-D positions. No torch at import.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Segment:
    """The part of a prompt a turn prefills, as the generic path has prepared it for `ReuseContract.prefill`."""

    args: dict  # inputs_embeds (media scattered in), attention_mask, position_ids, past_key_values, use_cache
    inputs: dict  # the whole prompt's processor outputs (assistant/incremental.py)
    text_ids: object  # (1, n) the segment's token ids, placeholders as padding
    start: int  # where the segment starts in the prompt
    end: int  # where it ends (exclusive): the prompt's last token is left to generate
    blocks: list  # (start, end, kind, index, media key) of every media block of the whole prompt
    levels: dict  # block start -> (levels, tokens, hidden): an encoder's extra outputs for blocks in the segment


class ReuseContract:
    """The defaults: every model reuses, positions are 0..n-1 with no deltas, the inner model takes the segment as
    it is, and the processor needs nothing of an item seen before but its token count."""

    # Processor outputs carrying new media's pixels or features (and their places), passed on for `encode`.
    media_inputs: tuple[str, ...] = ()

    def supports(self, model) -> bool:
        """Whether this model's work can be kept across turns (a cached token must not depend on later ones)."""
        return True

    def positions(self, inner, inputs) -> tuple:
        """(position ids for the whole prompt, rope deltas the model keeps for generate, or None)."""
        import torch

        length = inputs["input_ids"].shape[1]
        return torch.arange(length, device=inputs["input_ids"].device).unsqueeze(0), None

    def encode(self, inner, inputs, kind: str, j: int, float_dtype):
        """The `j`-th new item of `kind` in `inputs` through its encoder: (tokens, hidden), or (levels, tokens,
        hidden) whose first level goes over the placeholders and the rest to `prefill` as `Segment.levels`. An item
        whose placeholders mix kinds (a video heard with its sound track) gives the rows of its own kind's tokens
        first, then each other kind's (in the order image, video, audio), each in the order the tokens come."""
        raise NotImplementedError(f"this family encodes no {kind} for reuse")

    def prefill(self, inner, segment: Segment) -> None:
        """Run the language model over the segment, filling `segment.args["past_key_values"]`."""
        inner(**segment.args)

    def wrap(self, processor, kind: str) -> tuple[str, str]:
        """What the processor writes before and after an item's run of placeholder tokens (the chat template's own
        begin and end tokens are already in the text); needed only where the processor does not report what it
        replaced each placeholder with (`return_text_replacement_offsets`)."""
        return "", ""

    def remember(self, fresh, kind: str, j: int) -> dict:
        """What the prompt's processor outputs will need later of the `j`-th new item of `kind` in the processor's
        output `fresh` (an image or video grid, a clip's feature length), once the item is no longer processed.
        `fresh` holds the new images, then clips, then videos, each placeholder's replacement in
        `fresh["text_replacement_offsets"]`."""
        return {}

    def position_inputs(self, kind: str, remembered: list[dict]) -> dict:
        """Processor outputs for the whole prompt made from what was remembered of every item of `kind`, in order."""
        return {}
