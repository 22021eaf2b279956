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
