"""The sign-in page, in place of Gradio's: Gradio's says "Incorrect credentials" for a refusal and nothing at all when
sign-ins are paused (429), so a person locked out for fifteen minutes would keep typing a right password in vain.

While the app has accounts, the page's address sends anyone not signed in here; the form posts to Gradio's own
`/login` (which ui/sessions.py limits), then goes back to the page. It speaks the page's language (ui/i18n.py: the
switch's cookie, else the browser's), and has the switch too. Knows nothing of models or storage.
"""

from __future__ import annotations

import html
import json

from domain.i18n import LANGUAGE_NAMES, LANGUAGES, Text, say, t

PATH = "/signin"

PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{sign_in} · {title}</title>
<style>
  body {{ font-family: system-ui, sans-serif; background: #f4f4f5; color: #18181b; display: grid; place-items: center;
         min-height: 100vh; margin: 0; }}
  form {{ background: white; padding: 2rem; border-radius: .75rem; box-shadow: 0 1px 4px #0002; width: min(24rem, 90vw); }}
  h1 {{ font-size: 1.3rem; margin: 0 0 1rem; }}
  label {{ display: block; margin: .75rem 0 .25rem; font-weight: 600; }}
  input {{ width: 100%; box-sizing: border-box; padding: .55rem; font-size: 1rem; border: 1px solid #d4d4d8; border-radius: .4rem; }}
  button {{ margin-top: 1.25rem; width: 100%; padding: .6rem; font-size: 1rem; border: 0; border-radius: .4rem;
           background: #ea580c; color: white; cursor: pointer; }}
  button:disabled {{ opacity: .6; }}
  .note {{ color: #52525b; font-size: .9rem; }}
  #problem {{ color: #b91c1c; min-height: 1.2em; }}
  #language-switch {{ margin-top: 1rem; font-size: .85rem; text-align: center; }}
  #language-switch a {{ color: inherit; }}
  @media (prefers-color-scheme: dark) {{ body {{ background: #18181b; color: #f4f4f5; }}
    form {{ background: #27272a; }} .note {{ color: #a1a1aa; }} input {{ background: #18181b; color: inherit; border-color: #52525b; }}
    #problem {{ color: #fca5a5; }} }}
</style></head>
<body><form id="signin" method="post" action="login">
  <h1>{title}</h1>
  <label for="username">{user_name}</label>
  <input id="username" name="username" type="text" autocomplete="username" autofocus required>
  <label for="password">{password}</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required>
  <p id="problem" role="alert"></p>
  <button type="submit">{sign_in}</button>
  <p class="note">{note}</p>
  <nav id="language-switch">{switch}</nav>
</form>
<script>
const said = {said};
document.getElementById("language-switch").addEventListener("click", (event) => {{
  const link = event.target.closest("[data-lang]");
  if (!link) return;
  event.preventDefault();
  document.cookie = `{cookie}=${{link.dataset.lang}}; path=/; max-age={max_age}; SameSite=Lax`;
  location.reload();
}});
const form = document.getElementById("signin");
const problem = document.getElementById("problem");
form.addEventListener("submit", async (event) => {{
  event.preventDefault();
  const button = form.querySelector("button");
  button.disabled = true;
  problem.textContent = "";
  try {{
    const response = await fetch("login", {{ method: "POST", body: new FormData(form) }});
    if (response.ok) {{ location.replace("./"); return; }}
    let detail = null;
    try {{ detail = (await response.json()).detail; }} catch (error) {{}}
    problem.textContent = response.status === 429 && typeof detail === "string" ? detail
      : response.status === 400 ? said.wrong
      : said.failed.replace("{{status}}", response.status);
    form.password.value = "";
    form.password.focus();
  }} catch (error) {{
    problem.textContent = said.unreachable;
  }} finally {{
    button.disabled = false;
  }}
}});
</script></body></html>
"""


def signin_page(title: str | Text, note: str | Text, lang: str) -> str:
    from ui.i18n import COOKIE, COOKIE_MAX_AGE_S

    def said(key: str, **params) -> str:
        return say(t(f"page.signin.{key}", **params), lang)

    current = ' aria-current="true" style="font-weight: bold"'
    switch = " | ".join(
        f'<a href="#" data-lang="{x}" lang="{x}"{current if x == lang else ""}>{LANGUAGE_NAMES[x]}</a>' for x in LANGUAGES
    )
    # For the script, which fills in the status itself.
    messages = {"wrong": said("wrong"), "failed": said("failed", status="{status}"), "unreachable": said("unreachable")}
    return PAGE.format(
        lang=lang, title=html.escape(say(title, lang)), note=html.escape(say(note, lang)), switch=switch,
        sign_in=html.escape(said("sign_in")), user_name=html.escape(said("user_name")),
        password=html.escape(said("password")), said=json.dumps(messages, ensure_ascii=False).replace("</", "<\\/"),
        cookie=COOKIE, max_age=COOKIE_MAX_AGE_S,
    )  # fmt: skip


def signin_route(title: str | Text, note: str | Text):
    """The Starlette route of the page, in the language of whoever asks."""
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    from ui.i18n import language_of

    pages = {lang: signin_page(title, note, lang) for lang in LANGUAGES}

    async def signin(request):
        headers = {"Cache-Control": "no-store", "Vary": "Cookie, Accept-Language"}
        return HTMLResponse(pages[language_of(request)], headers=headers)

    return Route(PATH, signin, methods=["GET", "HEAD"])


class SignInRedirect:
    """While sign-in is required, the page's address takes a visitor without a valid session to the sign-in page."""

    def __init__(self, app, sessions):
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and scope["path"] == "/" and self._signed_out(scope):
            from starlette.responses import RedirectResponse

            # Relative, so that it also works under a reverse proxy's path prefix.
            return await RedirectResponse("signin", status_code=303)(scope, receive, send)
        await self.app(scope, receive, send)

    def _signed_out(self, scope) -> bool:
        from ui.sessions import cookies_of

        # SessionGuard, before this, has ended the request's session if it was no longer valid.
        return self.sessions.required() and not self.sessions.has_session(cookies_of(scope))
