"""The settings panel's fields as validated settings, and back."""

from __future__ import annotations

import pytest

from domain.errors import InvalidInput
from domain.settings import GenerationSettings
from ui.settings import fields_from_settings, settings_from_fields


def test_empty_fields_are_the_defaults_and_zero_means_zero():
    assert settings_from_fields("  ", "", None, "", " ") == GenerationSettings()
    assert settings_from_fields("", "0", "", "", "0") == GenerationSettings(temperature=0, seed=0)


def test_fields_round_trip():
    settings = GenerationSettings(
        system_prompt="Be brief.", temperature=0.7, top_p=0.9, max_new_tokens=256, seed=42, voice="Ethan"
    )
    assert settings_from_fields(*fields_from_settings(settings)) == settings
    assert fields_from_settings(None) == ("", "", "", "", "", "")


@pytest.mark.parametrize(
    "fields, message",
    [
        (("", "hot", "", "", ""), "Temperature: “hot” is not a number"),
        (("", "2.5", "", "", ""), "Temperature: input should be less than or equal to 2"),
        (("", "", "0", "", ""), "Top-p: input should be greater than 0"),
        (("", "", "", "1.5", ""), "Max new tokens: “1.5” is not a whole number"),
        (("", "", "", "0", ""), "Max new tokens: input should be greater than or equal to 1"),
        (("", "", "", "", "-1"), "Seed: input should be greater than or equal to 0"),
        (("x" * 20_001, "", "", "", ""), "System prompt: string should have at most 20000 characters"),
        (("", "", "", "", "", "v" * 65), "Voice: string should have at most 64 characters"),
    ],
)
def test_bad_fields_name_the_field_and_the_problem(fields, message):
    with pytest.raises(InvalidInput, match=message):
        settings_from_fields(*fields)
