"""Video through the OpenAI API: `video_url` parts as data URLs or (with --allow-remote-media) http(s) URLs, held to
the video limit; answered by a model that takes video, refused naming the model by one that does not, before
anything is saved."""

from __future__ import annotations

import base64

import pytest

from api.errors import ApiError
from api.request import parse
from domain import limits


def body(*parts: dict) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "What happens?"}, *parts]}]}


def video_part(url: str) -> dict:
    return {"type": "video_url", "video_url": {"url": url}}


def test_a_video_url_part_becomes_a_video_file_of_the_question():
    data = b"\0\0\0\x18ftypmp42"
    chat = parse(body(video_part("data:video/mp4;base64," + base64.b64encode(data).decode()),
                      video_part("data:video/quicktime;base64," + base64.b64encode(data).decode())), None)
    assert chat.question.files == [(data, "video-1.mp4"), (data, "video-2.mov")]


def test_a_video_data_url_may_be_larger_than_other_files_up_to_the_video_limit(monkeypatch):
    monkeypatch.setattr(limits, "MAX_FILE_BYTES", 1000)
    monkeypatch.setattr(limits, "MAX_VIDEO_BYTES", 5000)

    def data_url(mime: str, size: int) -> str:
        return f"data:{mime};base64," + base64.b64encode(b"\1" * size).decode()

    assert parse(body(video_part(data_url("video/mp4", 3000))), None).question.files[0][1] == "video-1.mp4"
    for part, where in (({"type": "image_url", "image_url": {"url": data_url("image/png", 3000)}}, "messages[0].content[1]"),
                        (video_part(data_url("video/mp4", 6000)), "messages[0].content[1]")):
        with pytest.raises(ApiError) as refused:
            parse(body(part), None)
        assert refused.value.status == 413 and refused.value.param == where


def test_a_video_by_http_url_is_fetched_only_when_allowed_and_up_to_the_video_limit():
    asked = []

    def fetch(url: str, limit: int, param: str) -> bytes:
        asked.append((url, limit, param))
        return b"fetched"

    request = body(video_part("https://media.example/clip.mp4"), {"type": "image_url", "image_url": "https://media.example/cat.png"})
    chat = parse(request, fetch)
    assert asked == [("https://media.example/clip.mp4", limits.MAX_VIDEO_BYTES, "messages[0].content[1]"),
                     ("https://media.example/cat.png", limits.MAX_FILE_BYTES, "messages[0].content[2]")]
    assert [name for _, name in chat.question.files] == ["video-1.mp4", "image-2.png"]
    with pytest.raises(ApiError, match="--allow-remote-media") as refused:
        parse(request, None)
    assert refused.value.status == 400 and refused.value.param == "messages[0].content[1]"


def test_a_video_url_part_without_a_url_names_its_place():
    with pytest.raises(ApiError) as refused:
        parse(body({"type": "video_url", "video_url": {}}), None)
    assert refused.value.status == 400 and "needs a `url`" in refused.value.message


def test_a_body_holds_a_video_at_its_limit_base64_encoded():
    assert limits.MAX_BODY_BYTES > limits.MAX_VIDEO_BYTES * 4 // 3 + (1 << 20)


# --- against the app as a user starts it -----------------------------------------------------------------------------


def video_question(path, text: str = "What happens in this video?") -> dict:
    from tests.helpers import data_url

    return {"role": "user", "content": [{"type": "text", "text": text}, video_part(data_url(path, "video/mp4"))]}


def test_omni_answers_a_spoken_video_and_stores_it(client, model, api, speech_video):
    from tests.helpers import stored

    _, data_dir = api
    response = client.chat.completions.with_raw_response.create(model=model, messages=[video_question(speech_video)], max_tokens=8)
    completion = response.parse()
    assert completion.choices[0].message.content
    text_only = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "What happens in this video?"}], max_tokens=2
    )
    assert completion.usage.prompt_tokens > text_only.usage.prompt_tokens + 10  # the frames and sound track were seen
    question = stored(data_dir).get_messages(response.headers["x-conversation-id"])[0]
    assert [(a.kind.value, a.mime, a.filename) for a in question.attachments] == [("video", "video/mp4", "video-1.mp4")]
    assert question.attachments[0].path.read_bytes() == speech_video.read_bytes()


def test_a_model_without_video_refuses_it_naming_the_model_before_anything_is_saved(tmp_path, family_model_dir, speech_video):
    import openai

    from tests.helpers import ready_app, stored

    app = ready_app(tmp_path, "--model", str(family_model_dir("qwen2-audio")), "--data-dir", str(tmp_path / "data"))
    try:
        client = openai.OpenAI(base_url=f"{app.url}/v1", api_key="not-needed", max_retries=0, timeout=120)
        model = client.models.list().data[0].id
        earlier = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!"}]
        for messages in ([video_question(speech_video)], [*earlier, video_question(speech_video)]):
            with pytest.raises(openai.BadRequestError) as refused:
                client.chat.completions.create(model=model, messages=messages, max_tokens=8)
            assert "“video-1.mp4” is a video, which Qwen2-Audio cannot watch" in refused.value.message
            assert refused.value.body["type"] == "invalid_request_error" and refused.value.code == "invalid_input"
        repository = stored(tmp_path / "data")
        assert repository.list_conversations() == [] and repository.list_conversations(archived=True) == []
        assert [p for p in (tmp_path / "data" / "files").rglob("*") if p.is_file()] == []
    finally:
        app.kill()
