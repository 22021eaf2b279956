"""The page's language: which one a request reads (the switch's cookie, else the browser's Accept-Language), the
page's strings as Gradio's `gr.I18n`, and what makes Gradio's frontend take the same language as the server.

Two kinds of text reach the page. What Gradio draws from the page's declaration (labels, placeholders, buttons,
Markdown) is a key (`label("page.x")`) that the frontend looks up in `page_i18n()` for its locale; what a handler
returns (chat bubbles, notices, errors) is said on the server in the request's language (ui.errors.said).
Gradio's frontend picks its locale from `navigator.language` when it starts, so the page's HTML gets a first script
(`PageLanguage`) that sets it to the language the server chose for that request: both then always agree. The
sentences themselves live in domain/locales (see domain.i18n); the page's keys start with `page.`.
"""

from __future__ import annotations

import json

from domain.i18n import LANGUAGE_NAMES, LANGUAGES, accepted_language, catalog, language, say, t

# Set by the page's language switch (remembered across visits); absent, the browser's language decides.
COOKIE = "assistant-lang"
COOKIE_MAX_AGE_S = 365 * 24 * 3600
PAGE_PREFIX = "page."


def language_of(request) -> str:
    """The language a gr.Request (or Starlette request) reads the page in."""
    chosen = (getattr(request, "cookies", None) or {}).get(COOKIE)  # None, or a stand-in: English
    if chosen:
        return language(chosen)
    return accepted_language((getattr(request, "headers", None) or {}).get("accept-language"))


def page_keys(lang: str) -> dict[str, str]:
    """The page's sentences in `lang` (the `page.` keys of its catalog)."""
    return {key: text for key, text in catalog(lang).items() if key.startswith(PAGE_PREFIX)}


def page_i18n():
    """The page's sentences for Gradio's frontend, which shows a `label(key)` in its locale."""
    import gradio as gr

    return gr.I18n(**{lang: page_keys(lang) for lang in LANGUAGES})


def label(key: str):
    """A text Gradio draws from the page's declaration (a label, a placeholder, a button, Markdown), by key."""
    from gradio.i18n import I18nData

    return I18nData(key)


# The first script of the page: Gradio's frontend reads its locale from navigator.language as it starts, before any
# script of the page's own `head` runs, so the language the server chose is set here.
_HEAD_SCRIPT = """<script>(() => {{
  const lang = {lang};
  for (const name of ["language", "languages"]) {{
    Object.defineProperty(navigator, name, {{get: () => name === "language" ? lang : [lang], configurable: true}});
  }}
  window.__assistantLanguage = lang;
}})();</script>"""

# The switch (ui/app.py puts it in the sidebar): each choice sets the cookie for a year and reloads the page.
SWITCH_HTML = (
    '<nav id="language-switch" style="font-size: var(--text-sm)">'
    + " | ".join(
        f'<a href="#" data-lang="{lang}" lang="{lang}" style="color: inherit">{LANGUAGE_NAMES[lang]}</a>'
        for lang in LANGUAGES
    )
    + "</nav>"
)
_SWITCH_JS = """() => {
    const titles = TITLES;
    const current = window.__assistantLanguage || document.documentElement.lang;
    if (titles[current]) document.title = titles[current];
    const nav = document.querySelector('#language-switch');
    if (!nav || nav.dataset.wired) return;
    nav.dataset.wired = '1';
    nav.querySelectorAll('[data-lang]').forEach((link) => {
        if (link.dataset.lang === current) { link.setAttribute('aria-current', 'true'); link.style.fontWeight = 'bold'; }
    });
    nav.addEventListener('click', (event) => {
        const link = event.target.closest('[data-lang]');
        if (!link) return;
        event.preventDefault();
        document.cookie = `COOKIE=${link.dataset.lang}; path=/; max-age=MAX_AGE; SameSite=Lax`;
        location.reload();
    });
}"""


def switch_js() -> str:
    """Run at page load: wires the switch, and titles the browser's tab in the page's language."""
    titles = json.dumps({lang: say(t("page.title"), lang) for lang in LANGUAGES}, ensure_ascii=False)
    return (
        _SWITCH_JS.replace("TITLES", titles).replace("COOKIE", COOKIE).replace("MAX_AGE", str(COOKIE_MAX_AGE_S))
    )


def head_script(lang: str) -> bytes:
    return _HEAD_SCRIPT.format(lang=json.dumps(lang)).encode()


class PageLanguage:
    """ASGI middleware: the page's HTML (GET /) starts with the script that gives Gradio's frontend the request's
    language, and says that language in `<html lang>`; it is never cached, since it depends on the cookie."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] != "/":
            return await self.app(scope, receive, send)
        from starlette.requests import Request

        lang = language_of(Request(scope))
        start: dict | None = None
        body: list[bytes] = []

        async def inject(message):
            nonlocal start
            if message["type"] == "http.response.start":
                headers = {name.lower(): value for name, value in message.get("headers", [])}
                is_page = headers.get(b"content-type", b"").startswith(b"text/html") and b"content-encoding" not in headers
                if not is_page:
                    start = None
                    return await send(message)
                start = message
                return None
            if start is None:
                return await send(message)
            body.append(message.get("body", b""))
            if message.get("more_body"):
                return None
            page = b"".join(body).replace(b"<head>", b"<head>" + head_script(lang), 1)
            page = page.replace(b'<html\n\tlang="en"', b'<html\n\tlang="' + lang.encode() + b'"', 1)
            kept = [(n, v) for n, v in start.get("headers", []) if n.lower() not in (b"content-length", b"cache-control")]
            kept += [(b"content-length", str(len(page)).encode()), (b"cache-control", b"no-store"),
                     (b"vary", b"Cookie, Accept-Language")]  # fmt: skip
            await send({**start, "headers": kept})
            await send({"type": "http.response.body", "body": page})

        await self.app(scope, receive, inject)
