"""Every sentence the app says to people, by key, in English and Simplified Chinese; the one place translations live.

The catalogs are `domain/locales/<area>.<language>.json` (`{"key": "template"}`, `str.format` fields by name); all
areas of a language are merged, and a key defined twice is an error. Code never writes a sentence meant for people: it
names one, `t("file.too_big", name=..., mb=...)`, and whoever shows it says it in the reader's language (`say`). The
API and the log say English. A parameter may itself be a `Text` (a duration, a model's note), said in the same
language; `{name:clause}` says a sentence without its full stop, to be part of a longer one. Nothing is read at
import; the catalogs load once, on first use.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from string import Formatter

ENGLISH = "en"
CHINESE = "zh-CN"
LANGUAGES = (ENGLISH, CHINESE)
LANGUAGE_NAMES = {ENGLISH: "English", CHINESE: "简体中文"}
_FOLDER = Path(__file__).with_name("locales")


@dataclass(frozen=True)
class Text:
    """A sentence by key with its parameters; `str()` is the English one."""

    key: str
    params: Mapping[str, object] = field(default_factory=dict)

    def __str__(self) -> str:
        return say(self, ENGLISH)


def t(key: str, /, **params) -> Text:
    return Text(key, params)


def say(text: Text | str, language: str = ENGLISH) -> str:
    """The sentence in `language` (English where the language is unknown); a plain str is said as it is."""
    if not isinstance(text, Text):
        return text
    language = language if language in LANGUAGES else ENGLISH
    template = catalog(language).get(text.key) or catalog(ENGLISH)[text.key]
    params = {
        name: _Said(say(value, language)) if isinstance(value, Text | str) else value for name, value in text.params.items()
    }
    return template.format(**params)


class _Said(str):
    """A said parameter; the format spec `clause` drops its full stop ("“a.png” is empty." -> "“a.png” is empty")."""

    def __format__(self, spec: str) -> str:
        return self.rstrip(".。") if spec == "clause" else format(str(self), spec)


def language(requested: str | None) -> str:
    """The app's language for a browser's or a cookie's language tag ("zh", "zh-Hans-CN", "en-GB"...)."""
    tag = (requested or "").strip().lower()
    return CHINESE if tag.startswith("zh") else ENGLISH


def accepted_language(header: str | None) -> str:
    """The first language of an Accept-Language header that the app speaks, else English."""
    for part in (header or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return CHINESE
        if tag.startswith("en"):
            return ENGLISH
    return ENGLISH


@cache
def catalog(language: str) -> dict[str, str]:
    merged: dict[str, str] = {}
    for path in sorted(_FOLDER.glob(f"*.{language}.json")):
        for key, template in json.loads(path.read_text(encoding="utf-8")).items():
            if key in merged:
                raise ValueError(f"{path.name}: the key {key!r} is defined twice for {language}")
            merged[key] = template
    return merged


def fields_of(template: str) -> set[str]:
    """The names a template formats ("{name} is {mb:.1f} MB" -> {"name", "mb"})."""
    return {name for _, name, _, _ in Formatter().parse(template) if name}
