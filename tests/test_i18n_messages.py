"""Sentences the server says to people, by key: every key in both languages, every key the code names defined, a
few refusals said in Chinese, stored answer errors kept by key, and the page's errors in the request's language."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import gradio as gr
import pytest

from domain.errors import EngineUnavailable, InvalidInput
from domain.i18n import CHINESE, ENGLISH, LANGUAGES, Text, catalog, fields_of, say, t
from domain.types import INTERRUPTED, MediaKind, Status, is_interrupted
from tests.loops import run_coroutine

ROOT = Path(__file__).resolve().parents[1]
LOCALES = ROOT / "domain" / "locales"
SOURCES = ("assistant", "storage", "api", "ui", "cli", "domain")
# t("key", ...) and t("a" if ... else "b", ...); a key chosen in a variable is named in a literal ending in a key.
_KEY = r'"([a-z0-9_]+(?:\.[a-z0-9_]+)+)"'
_NAMED = re.compile(rf"\bt\(\s*{_KEY}\s+if\b[^\n]*?\belse\s+{_KEY}|\bt\(\s*{_KEY}|\bkey = {_KEY}(?:\s+if\b[^\n]*?\belse\s+{_KEY})?")
_CHINESE = re.compile(r"[\u4e00-\u9fff]")


def _area_files(language: str) -> dict[str, dict[str, str]]:
    return {
        path.name.removesuffix(f".{language}.json"): json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(LOCALES.glob(f"*.{language}.json"))
    }


def test_every_key_of_every_area_has_both_languages_with_the_same_fields():
    english = _area_files(ENGLISH)
    assert "errors" in english
    for language in LANGUAGES[1:]:
        translated = _area_files(language)
        assert set(translated) == set(english), f"areas without a {language} file"
        for area, templates in english.items():
            assert set(translated[area]) == set(templates), f"{area}: keys missing in one language"
            for key, template in templates.items():
                other = translated[area][key]
                assert other.strip(), f"{area}.{language}: {key} is empty"
                assert fields_of(other) == fields_of(template), f"{area}.{language}: {key} formats other fields"
    assert set(catalog(CHINESE)) == set(catalog(ENGLISH))


def test_chinese_sentences_use_chinese_quotes_and_punctuation():
    for key, template in _area_files(CHINESE)["errors"].items():
        english = catalog(ENGLISH)[key]
        if "“" in english:
            assert "“" in template and '"' not in template, key
        if english.rstrip().endswith(".") and _CHINESE.search(template):
            assert template.rstrip()[-1] in "。）", key


def test_every_key_the_code_names_is_in_the_english_catalog():
    named: dict[str, str] = {}
    for area in SOURCES:
        for path in (ROOT / area).rglob("*.py"):
            for match in _NAMED.finditer(path.read_text(encoding="utf-8")):
                for key in filter(None, match.groups()):
                    named.setdefault(key, str(path.relative_to(ROOT)))
    assert len(named) > 100  # the scan found the code's keys
    missing = {key: where for key, where in named.items() if key not in catalog(ENGLISH)}
    assert not missing


def test_what_a_model_takes_is_said_for_every_combination_of_media():
    from itertools import combinations

    from assistant.families.capabilities import Capabilities

    kinds = list(MediaKind)
    for n in range(len(kinds) + 1):
        for accepts in combinations(kinds, n):
            family = Capabilities(name="x", title="X", accepts=frozenset(accepts), context_tokens=1)
            said = say(family.describe_accepts(), CHINESE)
            assert said.startswith("文字") and _CHINESE.search(said)
    assert str(Capabilities(name="x", title="X", accepts=frozenset({MediaKind.IMAGE, MediaKind.AUDIO}), context_tokens=1)
               .describe_accepts()) == "text, images and audios"


def test_refusals_of_a_turn_are_said_in_chinese(tmp_path):
    from assistant.validation import duration, validate_file, validate_text

    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (30 * 2**20))
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(InvalidInput) as too_big:
        validate_file(big, "大图.png", 300)
    assert str(too_big.value) == "“大图.png” is 30.0 MB; the limit is 25 MB per file."
    assert too_big.value.said(CHINESE) == "“大图.png”大小为 30.0 MB，每个文件上限为 25 MB。"
    with pytest.raises(InvalidInput) as nothing:
        validate_file(empty, "empty.wav", 300)
    assert nothing.value.said(CHINESE) == "“empty.wav”是空文件。"
    with pytest.raises(InvalidInput) as blank:
        validate_text("  ", has_files=False)
    assert blank.value.said(CHINESE) == "请输入消息，或附上图片或音频文件。"
    assert isinstance(duration(300), Text)
    assert (str(duration(300)), say(duration(300), CHINESE), say(duration(90), CHINESE)) == ("5 minutes", "5 分钟", "90 秒")


def test_an_import_refusal_and_the_import_summary_are_said_in_chinese(tmp_path):
    from storage.exchange import read_archive

    not_an_export = tmp_path / "notes.txt"
    not_an_export.write_text("just some notes")
    with pytest.raises(InvalidInput) as refused:
        read_archive(not_an_export, tmp_path / "scratch")
    assert str(refused.value).startswith("This is not an export this app can read")
    assert refused.value.said(CHINESE) == "这不是本应用能读取的导出文件：需要 .zip 文件（或 ChatGPT 的 conversations.json）。"

    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w") as archive:
        archive.writestr("../escape.txt", "x")
    with pytest.raises(InvalidInput) as unsafe:
        read_archive(bomb, tmp_path / "scratch")
    assert unsafe.value.said(CHINESE) == "该 zip 中有名称不安全的文件（“../escape.txt”）；未导入任何内容。"

    chatgpt = tmp_path / "conversations.json"
    chatgpt.write_text(json.dumps([{"title": "Trip", "mapping": {"a": {"message": {
        "author": {"role": "tool"}, "content": {"content_type": "text", "parts": ["ran a tool"]}}, "parent": None}}}]))
    _, summary = read_archive(chatgpt, tmp_path / "scratch")
    assert summary.sentence().endswith("Not imported: a tool message in “Trip”.")
    assert summary.sentence(CHINESE) == "已导入 1 个对话、0 条消息、0 个文件。未导入：“Trip”中的一条 tool 消息。"


def test_a_skipped_files_sentence_loses_its_full_stop_inside_another():
    skipped = t("import.skipped.in", what=t("file.empty", name="a.wav"), title="Trip")
    assert str(skipped) == "“a.wav” is empty (in “Trip”)"
    assert say(skipped, CHINESE) == "“a.wav”是空文件（在“Trip”中）"


def test_a_remote_servers_own_words_stay_as_they_are_in_a_translated_sentence():
    from assistant.remote_engine import _sentence

    text = _sentence(t("engine.failed", url="http://gpu:8000/v1"), "CUDA out of memory.", t("engine.advice.retry"))
    assert str(text) == (
        "The engine server at http://gpu:8000/v1 failed while answering: CUDA out of memory. "
        "Try again, and check the server's log if it keeps happening."
    )
    assert say(text, CHINESE) == "位于 http://gpu:8000/v1 的推理服务器在回答时出错：CUDA out of memory。请重试，如果一再发生，请查看服务器的日志。"


def test_a_stored_answer_error_keeps_its_key_and_exports_and_the_api_say_english(repository, tmp_path):
    from api.routes import failed_answer
    from assistant.answering import ANSWER_FAILED
    from assistant.events import ReplyFinished
    from storage.exchange import export_zip

    conversation = repository.create_conversation("errors")
    failed = repository.start_assistant_message(conversation.id)
    repository.finish_message(failed.id, "half", Status.ERROR, t("engine.unreachable", url="http://gpu:8000/v1"))
    interrupted = repository.start_assistant_message(conversation.id, parent_id=None)
    repository.finish_message(interrupted.id, "so far", Status.ERROR, INTERRUPTED)
    crashed = repository.start_assistant_message(conversation.id, parent_id=None)
    repository.finish_message(crashed.id, "", Status.ERROR, ANSWER_FAILED)

    stored = repository.get_message(failed.id)
    assert stored.error == t("engine.unreachable", url="http://gpu:8000/v1")
    assert say(stored.error, CHINESE).startswith("无法连接到位于 http://gpu:8000/v1 的推理服务器")
    assert repository.get_message(interrupted.id).error == INTERRUPTED
    assert say(repository.get_message(interrupted.id).error, CHINESE) == "本应用在这个回答完成前停止了运行。"

    out = tmp_path / "export.zip"
    export_zip(repository.export_conversations([conversation.id]), out)
    with zipfile.ZipFile(out) as archive:
        manifest = json.loads(archive.read(next(n for n in archive.namelist() if n.endswith(".json"))))
    errors = {m["error"] for c in manifest["conversations"] for m in c["messages"] if m["error"]}
    assert errors == {str(stored.error), "The app stopped before this answer was finished.", str(ANSWER_FAILED)}

    refused = failed_answer(ReplyFinished(stored, EngineUnavailable(stored.error)))
    assert refused.status == 502 and refused.message == str(stored.error)
    assert refused.message.startswith("The engine server at http://gpu:8000/v1 is not reachable")


def test_an_answer_error_stored_as_english_words_reads_back_as_they_are(repository):
    from sqlalchemy import update

    from storage.schema import MessageRow

    conversation = repository.create_conversation("old")
    old = repository.start_assistant_message(conversation.id)
    with repository._write.begin() as session:  # a row written before errors were stored by key
        session.execute(update(MessageRow).where(MessageRow.id == old.id).values(
            status=Status.ERROR.value, error="The app stopped before this answer was finished."))
    message = repository.get_message(old.id)
    assert message.error == "The app stopped before this answer was finished." and not isinstance(message.error, Text)
    assert say(message.error, CHINESE) == message.error  # said as it is
    assert is_interrupted(message.error) and is_interrupted(INTERRUPTED)  # continuing it still works


def test_a_stored_text_that_only_looks_like_a_key_stays_words():
    from storage.records import read_text, stored_text

    assert read_text(stored_text(t("file.empty", name="a.wav"))) == t("file.empty", name="a.wav")
    nested = t("import.skipped.in", what=t("file.empty", name="a.wav"), title="Trip")
    assert read_text(stored_text(nested)) == nested
    for words in ('{"key": "no.such.key", "params": {}}', "{not json", '{"a": 1}', "plain words", None, ""):
        assert read_text(words) == words


def _request(**headers) -> gr.Request:
    from starlette.requests import Request

    raw = [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()]
    return gr.Request(request=Request({"type": "http", "method": "POST", "path": "/", "headers": raw, "query_string": b""}))


def test_the_page_says_a_handlers_error_in_the_language_of_the_request():
    """Through Gradio itself: a handler that takes no gr.Request gets one, and its refusal is said in the request's
    language (the language switch's cookie first, else the browser's Accept-Language)."""
    from ui.errors import shows_errors

    @shows_errors
    def refuse(text: str):
        raise InvalidInput(t("text.empty"))

    @shows_errors
    def refuse_later(text: str, *more):
        yield text
        raise InvalidInput(t("file.empty", name=text))

    @shows_errors
    def own_request(text: str, request: gr.Request):
        assert isinstance(request, gr.Request)
        raise InvalidInput(t("text.empty"))

    with gr.Blocks() as demo:
        box, out = gr.Textbox(), gr.Textbox()
        box.submit(refuse, box, out)
        box.change(refuse_later, box, out)
        box.blur(own_request, box, out)
    plain, streaming, own = demo.fns.values()

    def shown(fn, request) -> str:
        with pytest.raises(gr.Error) as error:
            result = run_coroutine(demo.process_api(block_fn=fn, inputs=["a.wav"], state=None, request=request))
            while True:  # a generator: each call runs it to its next update
                result = run_coroutine(demo.process_api(
                    block_fn=fn, inputs=["a.wav"], state=None, request=request, iterator=result["iterator"]))
        return error.value.message

    for fn in (plain, own):
        assert shown(fn, _request(accept_language="zh-CN,zh;q=0.9,en;q=0.8")) == "请输入消息，或附上图片或音频文件。"
        assert shown(fn, _request(accept_language="en-GB,en")) == "Type a message or attach an image or audio file."
        assert shown(fn, _request(accept_language="en", cookie="assistant-lang=zh-CN")) == "请输入消息，或附上图片或音频文件。"
        assert shown(fn, _request()) == "Type a message or attach an image or audio file."
    assert shown(streaming, _request(accept_language="zh-CN")) == "“a.wav”是空文件。"
    assert shown(streaming, _request()) == "“a.wav” is empty."
    # Called directly (a test, a script), a handler still takes only its own arguments.
    with pytest.raises(gr.Error, match="is empty"):
        list(refuse_later("b.wav", "more"))
    with pytest.raises(gr.Error, match="Type a message"):
        refuse("x")


def test_a_sign_in_refusal_is_said_in_the_language_of_the_request():
    from ui.sessions import _said

    refusal = t("signin.too_many.account", wait=t("duration.minutes", n=15))
    scope = {"type": "http", "headers": [(b"accept-language", b"zh-CN")]}
    assert _said(refusal, scope) == "此账户登录失败次数过多：请在 15 分钟后重试。"
    assert _said(refusal, {"type": "http", "headers": []}) == "Too many failed sign-ins for this account: try again in 15 minutes."


def test_the_models_loading_line_and_its_failure_are_said_in_chinese():
    from assistant.model_host import ModelHost, Phase
    from domain.errors import ModelLoadError

    def load(progress):
        progress(t("progress.downloading_model", source="Qwen/Qwen2.5-Omni-3B"), 0.0)
        assert say(host.state.message, CHINESE) == "正在下载 Qwen/Qwen2.5-Omni-3B（仅首次启动时）…"
        raise ModelLoadError(t("model.out_of_memory", source="Qwen/Qwen2.5-Omni-3B"))

    host = ModelHost(load)
    host.start()
    assert host.wait(10) and host.state.phase is Phase.FAILED
    assert say(host.state.message, CHINESE) == "GPU 显存装不下模型“Qwen/Qwen2.5-Omni-3B”：请尝试 --quant 4bit，或换一个更小的模型。"
    assert str(host.state.message).startswith("The model “Qwen/Qwen2.5-Omni-3B” does not fit in the GPU's memory")


def test_a_demo_models_name_on_the_status_line_is_said_in_chinese_and_stays_english_in_answers(engine):
    from assistant.model_host import ModelHost

    host = ModelHost(lambda progress: engine)
    host.start()
    assert host.wait(30)
    assert engine.info.model == "demo Qwen2.5-Omni (random weights)"  # what answers' details and exports keep
    assert str(host.state.message).startswith("demo Qwen2.5-Omni (random weights) · none · ")
    assert say(host.state.message, CHINESE).startswith("演示模型 Qwen2.5-Omni（随机权重） · none · ")
