"""The page's endpoint for scripts, through gradio_client in its default settings against the app started as a user
would (`python run.py`): text, an image, audio, a continuation by conversation id, refusals with their reasons, the
signed-in user's conversations only, and an API listing that shows that one endpoint and none of the page's steps."""

from __future__ import annotations

import subprocess
import sys

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from domain.types import MediaKind, Role
from tests.helpers import ROOT, ready_app


def stored(data_dir, user: str | None = None):
    """The app's conversations as its database holds them (read from this process), as `user` sees them."""
    from cli.data import open_storage

    storage = open_storage(data_dir, None)
    return storage.conversations.for_owner(storage.users.id_of(user))


@pytest.fixture(scope="module")
def app(tmp_path_factory, demo_model_dir):
    folder = tmp_path_factory.mktemp("scripts")
    process = ready_app(folder, "--model", str(demo_model_dir), "--data-dir", str(folder / "data"))
    yield process, folder / "data"
    process.kill()


@pytest.fixture(scope="module")
def client(app):
    return Client(app[0].url)


def test_the_api_lists_only_the_documented_endpoint(client):
    listing = client.view_api(print_info=False, return_format="dict")
    assert list(listing["named_endpoints"]) == ["/chat"] and listing["unnamed_endpoints"] == {}
    chat = listing["named_endpoints"]["/chat"]
    assert [p["parameter_name"] for p in chat["parameters"]] == ["message", "files", "conversation_id"]
    assert len(chat["returns"]) == 2 and chat["description"]
    with pytest.raises(ValueError):  # the page's own steps are not for scripts
        client.predict({"text": "hi", "files": []}, None, False, "", "", "", "", "", api_name="/respond")


def test_a_text_question_then_an_image_and_audio_in_the_same_conversation(client, app, png_file, speech_wav):
    _, data_dir = app
    answer, conversation_id = client.predict("Hello there", api_name="/chat")
    repository = stored(data_dir)
    messages = repository.get_messages(conversation_id)
    assert [(m.role, m.text) for m in messages] == [(Role.USER, "Hello there"), (Role.ASSISTANT, answer)]

    answer, same = client.predict(
        "What is in this picture, and what does the recording say?",
        files=[handle_file(str(png_file)), handle_file(str(speech_wav))],
        conversation_id=conversation_id,
        api_name="/chat",
    )
    assert same == conversation_id
    messages = repository.get_messages(conversation_id)
    assert len(messages) == 4 and messages[-1].text == answer
    assert [(a.kind, a.filename) for a in messages[2].attachments] == [
        (MediaKind.IMAGE, png_file.name),
        (MediaKind.AUDIO, speech_wav.name),
    ]


def test_an_image_alone_starts_a_conversation(client, app, png_file):
    answer, conversation_id = client.predict(files=[handle_file(str(png_file))], api_name="/chat")
    [question, reply] = stored(app[1]).get_messages(conversation_id)
    assert [a.kind for a in question.attachments] == [MediaKind.IMAGE] and reply.text == answer


def test_bad_input_is_refused_with_its_reason_and_nothing_is_stored(client, app, tmp_path):
    repository = stored(app[1])
    before = len(repository.list_conversations())
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    for call, reason in (
        (dict(message="Read this", files=[handle_file(str(notes))]), "notes.txt"),
        (dict(message="   "), "Type a message or attach an image or audio file."),
        (dict(message="Hello", conversation_id="no-such-conversation"), "conversation"),
    ):
        with pytest.raises(AppError) as refused:
            client.predict(**call, api_name="/chat")
        assert reason in str(refused.value), (call, str(refused.value))
    assert len(repository.list_conversations()) == before


def test_with_accounts_a_script_signs_in_and_reaches_only_its_users_conversations(tmp_path, demo_model_dir):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for name in ("alice", "bob"):
        subprocess.run(
            [sys.executable, "run.py", "adduser", name, "--password-stdin", "--data-dir", str(data_dir)],
            input=f"{name}'s password\n", text=True, cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
    app = ready_app(tmp_path / "app", "--model", str(demo_model_dir), "--data-dir", str(data_dir))
    try:
        with pytest.raises(Exception):  # no login, no client
            Client(app.url)
        alice = Client(app.url, auth=("alice", "alice's password"))
        answer, conversation_id = alice.predict("Alice's question", api_name="/chat")
        assert [m.text for m in stored(data_dir, "alice").get_messages(conversation_id)] == ["Alice's question", answer]
        bob = Client(app.url, auth=("bob", "bob's password"))
        with pytest.raises(AppError):
            bob.predict("Bob hijacks", conversation_id=conversation_id, api_name="/chat")
        assert len(stored(data_dir, "alice").get_messages(conversation_id)) == 2
        assert stored(data_dir, "bob").list_conversations() == []
    finally:
        app.kill()
