"""The OpenAI API against the app as a user starts it (demo model): answers, media, streams, follow-ups and Stop."""

from __future__ import annotations

import base64

from tests.helpers import data_url, settled_answer, stored
from tests.media_factory import png, write_tone


def test_models_lists_the_one_model(client):
    models = client.models.list().data
    assert [m.id for m in models] == ["demo"]  # the checkpoint folder's name
    assert models[0].owned_by == "local-assistant"


def test_text_answer_is_stored_as_a_conversation_with_usage(client, model, api):
    _, data_dir = api
    response = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "Hello from a script"}], temperature=0, max_tokens=12
    )
    completion = response.parse()
    answer = completion.choices[0].message.content
    assert answer and completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage.completion_tokens > 0 and completion.usage.prompt_tokens > 5
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    conversation_id = response.headers["x-conversation-id"]
    messages = stored(data_dir).get_messages(conversation_id)
    assert [(m.role.value, m.text) for m in messages] == [("user", "Hello from a script"), ("assistant", answer)]
    assert stored(data_dir).get_conversation(conversation_id).title == "Hello from a script"


def test_image_and_audio_in_both_shapes_reach_the_model_and_are_stored(client, model, api, tmp_path, speech_wav):
    _, data_dir = api
    image = png(tmp_path / "red.png")
    clip = write_tone(tmp_path / "tone.wav", 1.5)
    content = [
        {"type": "text", "text": "What do you see and hear?"},
        {"type": "image_url", "image_url": {"url": data_url(image, "image/png")}},
        {"type": "input_audio", "input_audio": {"data": base64.b64encode(speech_wav.read_bytes()).decode(), "format": "wav"}},
        {"type": "audio_url", "audio_url": {"url": data_url(clip, "audio/wav")}},
    ]
    response = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": content}], max_tokens=8
    )
    completion = response.parse()
    assert completion.choices[0].message.content
    assert completion.usage.prompt_tokens > 100  # image and audio placeholders were expanded
    question = stored(data_dir).get_messages(response.headers["x-conversation-id"])[0]
    assert [a.kind.value for a in question.attachments] == ["image", "audio", "audio"]
    assert question.attachments[0].path.read_bytes() == image.read_bytes()


def test_streaming_sends_the_stored_answer_in_chunks_with_usage_last(client, model, api):
    _, data_dir = api
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Stream please"}], max_tokens=16, stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    latest = stored(data_dir).list_conversations()[0]
    assert stored(data_dir).get_messages(latest.id)[-1].text == text


def test_a_stateless_follow_up_continues_the_stored_conversation(client, model, api):
    _, data_dir = api
    history = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "First question, continued"}]
    first = client.chat.completions.with_raw_response.create(model=model, messages=history, max_tokens=8)
    conversation_id = first.headers["x-conversation-id"]
    history += [{"role": "assistant", "content": first.parse().choices[0].message.content},
                {"role": "user", "content": "And the second?"}]
    second = client.chat.completions.with_raw_response.create(model=model, messages=history, max_tokens=8)
    assert second.headers["x-conversation-id"] == conversation_id
    # It went on from the conversation's KV cache, and says so as OpenAI's usage does.
    assert first.parse().usage.prompt_tokens_details.cached_tokens == 0
    assert 0 < second.parse().usage.prompt_tokens_details.cached_tokens < second.parse().usage.prompt_tokens
    messages = stored(data_dir).get_messages(conversation_id)
    assert [m.role.value for m in messages] == ["user", "assistant", "user", "assistant"]
    assert stored(data_dir).get_conversation(conversation_id).settings.system_prompt == "Be brief."

    # History that was never stored here (another client's) becomes a new conversation holding it.
    foreign = [{"role": "user", "content": "First question, continued"}, {"role": "assistant", "content": "Not what you said"},
               {"role": "user", "content": "Third?"}]
    third = client.chat.completions.with_raw_response.create(model=model, messages=foreign, max_tokens=8)
    other = third.headers["x-conversation-id"]
    assert other != conversation_id
    assert [m.text for m in stored(data_dir).get_messages(other)][:3] == [m["content"] for m in foreign]


def test_a_stop_string_ends_the_answer_before_it(client, model):
    question = [{"role": "user", "content": "Say something long"}]
    whole = client.chat.completions.create(model=model, messages=question, temperature=0, max_tokens=40)
    text = whole.choices[0].message.content
    assert len(text) > 20
    cut = text[10:14]
    stopped = client.chat.completions.create(model=model, messages=question, temperature=0, max_tokens=40, stop=[cut])
    assert stopped.choices[0].message.content == text[: text.index(cut)]
    assert stopped.choices[0].finish_reason == "stop"


def test_closing_the_stream_stops_the_answer_and_keeps_what_was_said(client, model, api):
    _, data_dir = api
    stream = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "A long story, please"}], max_tokens=2000, stream=True
    )
    conversation_id = stream.headers["x-conversation-id"]
    received = ""
    for chunk in stream.parse():
        received += chunk.choices[0].delta.content or ""
        if len(received) > 20:
            break
    stream.http_response.close()
    answer = settled_answer(stored(data_dir), conversation_id, timeout=30)
    assert answer.status.value == "stopped"
    assert answer.text.startswith(received) and answer.details.answer_tokens < 2000


def test_history_never_stored_here_brings_its_files_into_a_new_conversation(client, model, api, tmp_path):
    """The history's files are checked as a turn's are (once), and stored with the kind and type their bytes show."""
    _, data_dir = api
    picture = png(tmp_path / "earlier.png", color=(10, 200, 30))
    history = [
        {"role": "user", "content": [{"type": "text", "text": "Earlier picture"},
                                     {"type": "image_url", "image_url": {"url": data_url(picture, "image/jpeg")}}]},
        {"role": "assistant", "content": "A green square."},
        {"role": "user", "content": "And now?"},
    ]  # fmt: skip
    response = client.chat.completions.with_raw_response.create(model=model, messages=history, max_tokens=8)
    messages = stored(data_dir).get_messages(response.headers["x-conversation-id"])
    assert [m.text for m in messages][:3] == ["Earlier picture", "A green square.", "And now?"]
    [attachment] = messages[0].attachments
    assert (attachment.kind.value, attachment.mime) == ("image", "image/png")
    assert attachment.path.read_bytes() == picture.read_bytes()


def test_each_streamed_event_is_one_line_for_any_reader():
    """JSON leaves U+2028, U+0085 and a few control characters unescaped; str.splitlines() (httpx's iter_lines) breaks
    lines there, so a reader lost the text of any chunk holding one (the random demo model writes them)."""
    import json

    from api.routes import _sse

    text = "a\u2028b\u2029c\x85d\x1ce\x0bf\x0cg — ünïcode ✓\nnewline"
    event = _sse({"choices": [{"delta": {"content": text}}]})
    assert event.endswith("\n\n") and len(event[:-2].splitlines()) == 1
    assert json.loads(event[len("data: "):])["choices"][0]["delta"]["content"] == text


def test_the_app_speaks_with_its_models_voice_and_transcribes_through_the_api(client, speech_wav):
    import io
    import wave

    spoken = client.audio.speech.create(model="tts-1", voice="Ethan", input="Hello from the app.", response_format="wav")
    with wave.open(io.BytesIO(spoken.content)) as file:
        assert file.getframerate() == 24_000 and file.getnframes() > 12_000
    with open(speech_wav, "rb") as file:
        transcript = client.audio.transcriptions.create(model="whisper-1", file=file, response_format="verbose_json")
    assert transcript.duration > 1.0 and isinstance(transcript.text, str)
