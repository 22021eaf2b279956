"""The per-conversation settings panel: what it shows, and turning its fields into validated GenerationSettings."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
from pydantic import ValidationError

from domain.errors import InvalidInput
from domain.i18n import t
from domain.settings import GenerationSettings

_NAMES = {
    "system_prompt": "System prompt",
    "temperature": "Temperature",
    "top_p": "Top-p",
    "max_new_tokens": "Max new tokens",
    "seed": "Seed",
    "voice": "Voice",
}


@dataclass
class SettingsPanel:
    system_prompt: gr.Textbox
    temperature: gr.Textbox
    top_p: gr.Textbox
    max_new_tokens: gr.Textbox
    seed: gr.Textbox
    voice: gr.Dropdown  # its choices are the voices of the model loaded (see voice_choices)

    @property
    def fields(self) -> list:
        return [self.system_prompt, self.temperature, self.top_p, self.max_new_tokens, self.seed, self.voice]


def build_settings_panel() -> SettingsPanel:
    """Declare the panel (inside a `with gr.Blocks()` block). Empty fields mean the app's defaults."""
    with gr.Accordion("⚙ Settings for this conversation", open=False, elem_id="settings"):
        system_prompt = gr.Textbox(
            label="System prompt", placeholder="(the model's default)", lines=2, max_lines=8, elem_id="system-prompt"
        )
        # Text fields, not gr.Number: an empty number field reads as 0, and 0 means something (greedy, seed 0).
        with gr.Row():
            temperature = gr.Textbox(label="Temperature (0–2, 0 = greedy)", max_lines=1, elem_id="temperature")
            top_p = gr.Textbox(label="Top-p (0–1)", max_lines=1, elem_id="top-p")
            max_new_tokens = gr.Textbox(label="Max new tokens", max_lines=1, elem_id="max-new-tokens")
            seed = gr.Textbox(label="Seed", max_lines=1, elem_id="seed")
            # A custom value is allowed: a conversation may keep a voice the model loaded now lacks (its default speaks).
            voice = gr.Dropdown(
                label="Voice (spoken answers)", choices=[DEFAULT_VOICE], value="", allow_custom_value=True, elem_id="voice"
            )
        gr.Markdown("Empty fields use the defaults. The settings are saved with the conversation when you send.")
    return SettingsPanel(system_prompt, temperature, top_p, max_new_tokens, seed, voice)


DEFAULT_VOICE = ("Default", "")


def voice_choices(speech) -> gr.Dropdown:
    """The Voice field offering the voices of `speech` (assistant.speech.SpeechEngine, or None: speech is off)."""
    voices = speech.voices if speech is not None else ()
    return gr.Dropdown(choices=[DEFAULT_VOICE, *((v, v) for v in voices)], interactive=speech is not None)


def settings_from_fields(system_prompt, temperature, top_p, max_new_tokens, seed, voice=None) -> GenerationSettings:
    """The panel's fields as settings; InvalidInput naming the field when one is not a number or out of range."""
    values = {
        "system_prompt": (system_prompt or "").strip() or None,
        "temperature": _number(temperature, "temperature", float),
        "top_p": _number(top_p, "top_p", float),
        "max_new_tokens": _number(max_new_tokens, "max_new_tokens", int),
        "seed": _number(seed, "seed", int),
        "voice": (voice or "").strip() or None,
    }
    try:
        return GenerationSettings(**values)
    except ValidationError as error:
        first = error.errors()[0]
        name = _NAMES.get(str(first["loc"][0]), str(first["loc"][0]))
        raise InvalidInput(t("settings.invalid", field=name, problem=first["msg"].lower())) from None


def _number(text, name: str, kind: type):
    text = "" if text is None else str(text).strip()
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        key = "settings.not_a_whole_number" if kind is int else "settings.not_a_number"
        raise InvalidInput(t(key, field=_NAMES[name], text=text)) from None


def fields_from_settings(settings: GenerationSettings | None) -> tuple:
    settings = settings or GenerationSettings()
    numbers = (settings.temperature, settings.top_p, settings.max_new_tokens, settings.seed)
    return settings.system_prompt or "", *("" if n is None else str(n) for n in numbers), settings.voice or ""
