"""The page's language: which one a request reads (the switch's cookie, else the browser's Accept-Language) and the
page's strings as Gradio's `gr.I18n`. The sentences themselves live in domain/locales (see domain.i18n)."""

from __future__ import annotations

from domain.i18n import accepted_language, language

# Set by the page's language switch (remembered across visits); absent, the browser's language decides.
COOKIE = "assistant-lang"


def language_of(request) -> str:
    """The language a gr.Request (or Starlette request) reads the page in."""
    if request is None:
        return accepted_language(None)
    chosen = request.cookies.get(COOKIE) if getattr(request, "cookies", None) is not None else None
    if chosen:
        return language(chosen)
    return accepted_language(request.headers.get("accept-language"))
