"""Qwen2.5-Omni's own voice: its Talker turns the Thinker's hidden states into speech codes, its token2wav turns the
codes into a 24 kHz waveform, in one of the published speakers (spk_dict.pt).

transformers' `Qwen2_5OmniForConditionalGeneration.generate` speaks only once the whole answer is written. Here each
sentence is spoken as soon as it is complete: the Thinker's hidden states for it come from one forward pass over a
short speaking prompt followed by the sentence (what generation would have computed for those tokens), and the
Talker's inputs are built from them exactly as `generate` builds them. The forward pass goes through the Thinker's
text model with explicit positions, which keeps no state, so it may run beside an answer being generated.
Knows nothing of Gradio or SQL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np

from assistant.speech import Speech, pieces, resolve_voice

RATE = 24_000
# The system prompt the published model was trained to speak under (its model card says so).
SPEAKING_PROMPT = (
    "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving auditory and "
    "visual inputs, as well as generating text and speech."
)
CODES_PER_SECOND = 50
# The longest speech a sentence may take, per character (a Chinese character takes longer to say than a letter).
SECONDS_PER_CHARACTER = {"cjk": 0.3, "other": 0.1}
SAMPLING = {"do_sample": True, "top_k": 40, "top_p": 0.8, "temperature": 0.9, "repetition_penalty": 1.05}


class OmniTalker:
    """A speech engine (assistant.speech.SpeechEngine) over a loaded `Qwen2_5OmniForConditionalGeneration`."""

    label = "Qwen2.5-Omni Talker"

    def __init__(self, model, processor):
        if not model.speaker_map:
            raise ValueError("the checkpoint has no speakers (spk_dict.pt)")
        self.model = model
        self.tokenizer = processor.tokenizer
        self.voices = tuple(model.speaker_map)
        self.default_voice = "Chelsie" if "Chelsie" in self.voices else self.voices[0]
        conversation = [
            {"role": "system", "content": [{"type": "text", "text": SPEAKING_PROMPT}]},
            {"role": "user", "content": [{"type": "text", "text": ""}]},
        ]
        prompt = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        self._prompt = self.tokenizer(prompt, add_special_tokens=False).input_ids
        self._lock = threading.Lock()  # one sentence at a time: the Talker keeps its rotary offsets on itself

    def resolve(self, voice: str | None) -> str:
        return resolve_voice(self, voice)

    def speak(self, text: str, voice: str, speed: float = 1.0, stop: threading.Event | None = None) -> Iterator[Speech]:
        voice = self.resolve(voice)
        for sentence in pieces(text):
            samples = self._waveform(sentence, voice, stop)
            if samples is None:
                return  # stopped
            if speed != 1.0:
                from assistant.audio_encode import change_tempo

                samples = change_tempo(samples, RATE, speed)
            yield Speech(samples, RATE, sentence, voice)

    def _waveform(self, sentence: str, voice: str, stop: threading.Event | None) -> np.ndarray | None:
        import torch

        with self._lock, torch.inference_mode():
            if stop is not None and stop.is_set():
                return None
            codes = self._codes(sentence, voice, stop)
            if stop is not None and stop.is_set():
                return None
            speaker = self.model.speaker_map[voice]
            device = codes.device
            token2wav = self.model.token2wav
            wav = token2wav(
                codes,
                conditioning=speaker["cond"].to(device).float(),
                reference_mel=speaker["ref_mel"].to(device).float(),
            )
        samples = wav.reshape(-1).float().cpu().numpy()
        peak = float(np.abs(samples).max()) if samples.size else 0.0
        return (samples / peak * 0.9 if peak > 1e-8 else samples).astype(np.float32)

    def _codes(self, sentence: str, voice: str, stop: threading.Event | None = None):
        """The Talker's speech codes for one sentence (without its end token); cut short once `stop` is set."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        class Stopped(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), stop is not None and stop.is_set(), device=input_ids.device)

        thinker, talker = self.model.thinker, self.model.talker
        embed = thinker.get_input_embeddings()
        device = embed.weight.device
        reply = self.tokenizer(sentence, add_special_tokens=False).input_ids
        ids = torch.tensor([self._prompt + reply], device=device)
        prompt_length, length = len(self._prompt), ids.shape[1]
        embeds = embed(ids)
        positions = torch.arange(length, device=device).view(1, 1, length).expand(3, 1, length)
        hidden = thinker.model(
            inputs_embeds=embeds, position_ids=positions, output_hidden_states=True, use_cache=False
        ).hidden_states[-1]
        states = hidden + embeds  # what the Talker hears of each token: its meaning and its text

        def one(token: int):
            return embed(torch.tensor([[token]], device=device))

        def column(token: int):
            return torch.tensor([[token]], device=device)

        bos = self.model.speaker_map[voice]["bos_token"]
        inputs_embeds = torch.cat([states[:, :prompt_length], one(bos), states[:, prompt_length : prompt_length + 1]], 1)
        reply_part = torch.cat([states[:, prompt_length + 1 :], one(talker.text_eos_token), one(talker.text_pad_token)], 1)
        text_ids = torch.cat([ids[:, :prompt_length], column(bos), ids[:, prompt_length : prompt_length + 1]], 1)
        talker_ids = torch.cat(
            [torch.full_like(ids[:, :prompt_length], talker.codec_mask_token), column(talker.codec_pad_token),
             column(talker.codec_bos_token)],
            1,
        )
        ends = [talker.codec_eos_token, talker.codec_pad_token]
        # Codes token2wav has no embedding for (the codec's special ones past its table) are never chosen.
        known = self.model.config.token2wav_config.dit_config.num_embeds
        unspeakable = [talker.codec_bos_token] + [c for c in range(known, talker.codebook_size) if c not in ends]
        generated = talker.generate(
            input_ids=talker_ids,
            input_text_ids=text_ids,
            thinker_reply_part=reply_part.to(talker.dtype),
            inputs_embeds=inputs_embeds.to(talker.dtype),
            suppress_tokens=unspeakable,
            max_new_tokens=_longest_codes(sentence),
            eos_token_id=ends,
            pad_token_id=talker.codec_pad_token,
            stopping_criteria=StoppingCriteriaList([Stopped()]),
            **SAMPLING,
        )[:, talker_ids.shape[1] :]
        ended = torch.isin(generated[0], torch.tensor(ends, device=generated.device)).nonzero()
        return generated[:, : int(ended[0]) if len(ended) else generated.shape[1]]


def _longest_codes(sentence: str) -> int:
    cjk = sum(1 for c in sentence if "\u3400" <= c <= "\u9fff")
    seconds = 1.0 + cjk * SECONDS_PER_CHARACTER["cjk"] + (len(sentence) - cjk) * SECONDS_PER_CHARACTER["other"]
    return int(seconds * CODES_PER_SECOND)
