"""The per-conversation settings panel: what it shows, and turning its fields into validated GenerationSettings."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
from pydantic import ValidationError

from domain.errors import InvalidInput
from domain.i18n import ENGLISH, Text, say, t
from domain.settings import GenerationSettings
from ui.i18n import label

_FIELDS = ("system_prompt", "temperature", "top_p", "max_new_tokens", "seed", "voice")
# Pydantic's refusals the panel can meet, by type: the sentence (page.settings.<type>) and the limit it names.
_REFUSALS = {"greater_than_equal": "ge", "greater_than": "gt", "less_than_equal": "le", "string_too_long": "max_length"}


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
    with gr.Accordion(label("page.settings.title"), open=False, elem_id="settings"):
        system_prompt = gr.Textbox(
            label=label("page.settings.name.system_prompt"), placeholder=label("page.settings.system_prompt_default"),
            lines=2, max_lines=8, elem_id="system-prompt",
        )  # fmt: skip
        # Text fields, not gr.Number: an empty number field reads as 0, and 0 means something (greedy, seed 0).
        with gr.Row():
            temperature = gr.Textbox(label=label("page.settings.temperature"), max_lines=1, elem_id="temperature")
            top_p = gr.Textbox(label=label("page.settings.top_p"), max_lines=1, elem_id="top-p")
            max_new_tokens = gr.Textbox(label=label("page.settings.name.max_new_tokens"), max_lines=1, elem_id="max-new-tokens")
            seed = gr.Textbox(label=label("page.settings.name.seed"), max_lines=1, elem_id="seed")
            # A custom value is allowed: a conversation may keep a voice the model loaded now lacks (its default speaks).
            # Its choices come with the page's language once it loads (voice_choices).
            voice = gr.Dropdown(
                label=label("page.settings.voice"), choices=[default_voice()], value="", allow_custom_value=True,
                elem_id="voice",
            )  # fmt: skip
        gr.Markdown(label("page.settings.note"))
    return SettingsPanel(system_prompt, temperature, top_p, max_new_tokens, seed, voice)


def default_voice(language: str = ENGLISH) -> tuple[str, str]:
    return say(t("page.settings.default_voice"), language), ""


def voice_choices(speech, language: str = ENGLISH) -> gr.Dropdown:
    """The Voice field offering the voices of `speech` (assistant.speech.SpeechEngine, or None: speech is off)."""
    voices = speech.voices if speech is not None else ()
    return gr.Dropdown(choices=[default_voice(language), *((v, v) for v in voices)], interactive=speech is not None)


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
        raise InvalidInput(_refusal(error.errors()[0])) from None


def _name(field: str) -> Text | str:
    return t(f"page.settings.name.{field}") if field in _FIELDS else field


def _refusal(error: dict) -> Text:
    """Pydantic's first refusal as a sentence by key ("Temperature: input should be less than or equal to 2.")."""
    field, kind = str(error["loc"][0]), error["type"]
    if kind in _REFUSALS:
        limit = (error.get("ctx") or {}).get(_REFUSALS[kind])
        if limit is not None:
            limit = int(limit) if isinstance(limit, float) and limit.is_integer() else limit
            return t(f"page.settings.{kind}", name=_name(field), limit=limit)
    return t("page.settings.refused", name=_name(field), reason=error["msg"].lower())


def _number(text, name: str, kind: type):
    text = "" if text is None else str(text).strip()
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        what = "page.settings.not_whole_number" if kind is int else "page.settings.not_number"
        raise InvalidInput(t(what, name=_name(name), text=text)) from None


def fields_from_settings(settings: GenerationSettings | None) -> tuple:
    settings = settings or GenerationSettings()
    numbers = (settings.temperature, settings.top_p, settings.max_new_tokens, settings.seed)
    return settings.system_prompt or "", *("" if n is None else str(n) for n in numbers), settings.voice or ""
