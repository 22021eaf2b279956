"""Translations: every key in both languages with the same fields, every key the page's code names defined, the page's
keys handed to Gradio, and the served pages (the chat page's first script, the sign-in page) in the asker's language."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from domain.i18n import CHINESE, ENGLISH, LANGUAGES, catalog, fields_of, say, t
from tests.loops import run_coroutine

ROOT = Path(__file__).resolve().parent.parent
LOCALES = ROOT / "domain" / "locales"
AREAS = sorted({path.name.split(".")[0] for path in LOCALES.glob("*.json")})
# A page key named in the page's code (Python or its scripts): "page.sidebar.new_chat", 'page.voice.listening'.
PAGE_KEY = re.compile(r"""["'](page\.[a-z0-9_.]+[a-z0-9_])["']""")


@pytest.mark.parametrize("area", AREAS)
def test_every_key_is_in_both_languages_with_the_same_fields(area):
    english, chinese = _keys(area, ENGLISH), _keys(area, CHINESE)
    assert english ^ chinese == set(), f"{area}: keys in one language only"
    for key in english:
        assert fields_of(catalog(ENGLISH)[key]) == fields_of(catalog(CHINESE)[key]), key
        assert catalog(CHINESE)[key].strip(), f"{key} has no Chinese sentence"


def _keys(area: str, lang: str) -> set[str]:
    import json

    return set(json.loads((LOCALES / f"{area}.{lang}.json").read_text(encoding="utf-8")))


def test_the_pages_keys_are_its_own_and_every_one_its_code_names_exists():
    assert all(key.startswith("page.") for key in _keys("page", ENGLISH))
    named = {
        key
        for path in [*(ROOT / "ui").glob("*.py"), *(ROOT / "ui").glob("*.js")]
        for key in PAGE_KEY.findall(path.read_text(encoding="utf-8"))
    }
    assert len(named) > 50
    assert named - set(catalog(ENGLISH)) == set()


def test_a_sentence_is_said_in_each_language():
    assert say(t("page.sidebar.new_chat"), ENGLISH) == "➕ New chat"
    assert say(t("page.sidebar.new_chat"), CHINESE) == "➕ 新对话"
    assert say(t("page.wait.queued", n=3), CHINESE).startswith("⏳ 排队中")
    assert str(t("page.wait.queued", n=3)) == "⏳ Queued: 3 answers for other chats before yours. **⏹ Stop** cancels."


def test_gradio_gets_the_pages_keys_in_both_languages():
    from ui.i18n import page_i18n

    translations = page_i18n().translations_dict
    assert set(translations) == set(LANGUAGES)
    assert translations[CHINESE]["page.stop"] == "⏹ 停止"
    assert set(translations[ENGLISH]) == set(translations[CHINESE]) == _keys("page", ENGLISH)


@pytest.mark.parametrize(
    ("cookie", "accept", "expected"),
    [
        (None, "zh-CN,zh;q=0.9,en;q=0.8", CHINESE),
        (None, "en-US,en;q=0.9", ENGLISH),
        (None, "fr-FR,zh-TW;q=0.8", CHINESE),
        (None, None, ENGLISH),
        ("en", "zh-CN", ENGLISH),
        ("zh-CN", "en-US", CHINESE),
    ],
)
def test_the_page_starts_in_the_requests_language(cookie, accept, expected):
    from ui.i18n import COOKIE, PageLanguage

    page = b'<!doctype html>\n<html\n\tlang="en"\n\tstyle="margin: 0"\n>\n\t<head>\n<meta charset="utf-8" /></head><body></body></html>'

    async def gradio(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(page)).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": page})

    headers = [(b"accept-language", accept.encode())] if accept else []
    headers += [(b"cookie", f"{COOKIE}={cookie}".encode())] if cookie else []
    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": headers, "query_string": b""}
    run_coroutine(PageLanguage(gradio)(scope, None, send))
    start, body = sent
    served = body["body"].decode()
    assert f'lang="{expected}"' in served
    # First in <head>, before Gradio's own scripts: the frontend reads navigator.language as it starts.
    assert served.index(f'const lang = "{expected}"') < served.index("<meta")
    assert int(dict(start["headers"])[b"content-length"]) == len(body["body"])
    assert dict(start["headers"])[b"cache-control"] == b"no-store"


def test_the_sign_in_page_is_in_the_askers_language():
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from ui.app import TITLE
    from ui.sessions import LOGIN_NOTE
    from ui.signin import signin_route

    client = TestClient(Starlette(routes=[signin_route(TITLE, LOGIN_NOTE)]))
    chinese = client.get("/signin", headers={"Accept-Language": "zh-CN"}).text
    assert '<html lang="zh-CN">' in chinese and "<h1>本地助手</h1>" in chinese and ">登录</button>" in chinese
    assert say(LOGIN_NOTE, CHINESE) in chinese and "用户名或密码错误。" in chinese
    english = client.get("/signin", headers={"Accept-Language": "en-GB"}).text
    assert "<h1>Local Assistant</h1>" in english and ">Sign in</button>" in english and "Wrong user name or password." in english
    chosen = client.get("/signin", headers={"Accept-Language": "zh-CN"}, cookies={"assistant-lang": "en"}).text
    assert ">Sign in</button>" in chosen


def test_the_chinese_readme_gives_the_commands_the_options_and_the_models():
    import subprocess
    import sys

    english, chinese = ((ROOT / name).read_text(encoding="utf-8") for name in ("README.md", "README.zh-CN.md"))
    start = english.index("## Run it")
    runs_and_tests = english[start : english.index("\n## ", english.index("## Test it"))]
    commands = [line for line in runs_and_tests.splitlines() if line.startswith("bash scripts/")]
    assert len(commands) >= 2 and all(command in chinese for command in commands)
    shown = subprocess.run([sys.executable, str(ROOT / "run.py"), "--help"], capture_output=True, text=True, check=True).stdout
    options = set(re.findall(r"^\s+(--[a-z-]+)", shown, re.M)) - {"--help"}
    assert {option for option in options if f"`{option}" not in chinese} == set()
    assert all(f"`{name}`" in chinese for name in re.findall(r"^\| [^|]+\(`([a-z0-9.-]+)`", english, re.M))
    assert "(README.zh-CN.md)" in english and "(README.md)" in chinese
