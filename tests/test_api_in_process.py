"""The OpenAI API in this process over a dialogue manager the test holds: clients at once, a crash, faults of the machine."""

from __future__ import annotations

import contextlib
import threading

import openai
import pytest

from tests.helpers import data_url, wait_until


@contextlib.contextmanager
def served(dialogue, tmp_path):
    """ChatApi's routes served by uvicorn on a free loopback port, in a thread; yields an `openai` client for it."""
    import uvicorn
    from starlette.applications import Starlette

    from api.routes import ChatApi
    from tests.helpers import free_port

    api = ChatApi(dialogue, dialogue.host, "demo", accounts=lambda: False, user_of_key=lambda key: None,
                  upload_dir=tmp_path / "api-uploads")
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=api.routes()), host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), 20, 0.05, "the API server did not start")
    assert server.started, "the API server did not start"
    try:
        yield openai.OpenAI(base_url=f"http://127.0.0.1:{server.config.port}/v1", api_key="none", max_retries=0, timeout=120)
    finally:
        server.should_exit = True
        thread.join(10)


def tree(repository, conversation_id):
    """Every message of a conversation, on every branch."""
    [exported] = repository.export_conversations([conversation_id])
    return exported.messages


def test_clients_continuing_one_conversation_at_once_each_make_a_branch_of_it(engine, repository, tmp_path):
    """Four clients send [u0, a0, u_i] at the same moment: each question hangs under a0 in the one conversation, and
    each answer is made from its own branch, never with another client's question in its context."""
    from assistant.dialogue import DialogueManager
    from assistant.media import MediaLoader
    from assistant.turn_queue import TurnQueue
    from tests.engine_helpers import RecordingEngine, ready_host

    recording = RecordingEngine(engine, max_new_tokens=6)
    dialogue = DialogueManager(repository, ready_host(recording), MediaLoader(), TurnQueue())
    with served(dialogue, tmp_path) as client:
        first = client.chat.completions.with_raw_response.create(
            model="demo", messages=[{"role": "user", "content": "Where shall we start?"}], max_tokens=6
        )
        conversation_id = first.headers["x-conversation-id"]
        history = [{"role": "user", "content": "Where shall we start?"},
                   {"role": "assistant", "content": first.parse().choices[0].message.content}]
        questions = [f"Client {name} asks about {name}s" for name in ("apple", "boat", "cloud", "drum")]
        start = threading.Barrier(len(questions))
        answers: dict[str, tuple[str, str]] = {}

        def ask(question: str) -> None:
            start.wait()
            response = client.chat.completions.with_raw_response.create(
                model="demo", messages=[*history, {"role": "user", "content": question}], max_tokens=6
            )
            answers[question] = (response.headers["x-conversation-id"], response.parse().choices[0].message.content)

        clients = [threading.Thread(target=ask, args=(q,)) for q in questions]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(120)
    assert sorted(answers) == sorted(questions)
    assert {conversation for conversation, _ in answers.values()} == {conversation_id}
    assert [c.id for c in repository.list_conversations()] == [conversation_id]  # no copies
    messages = tree(repository, conversation_id)
    first_answer = next(m for m in messages if m.role.value == "assistant")
    for question in questions:
        [asked] = [m for m in messages if m.text == question]
        [answer] = [m for m in messages if m.parent_id == asked.id]
        assert asked.parent_id == first_answer.id
        assert (answer.status.value, answer.text) == ("complete", answers[question][1])
    prompts = [engine.processor.tokenizer.decode(p["input_ids"][0]) for p in recording.prepared[1:]]
    assert len(prompts) == len(questions)
    for prompt in prompts:
        assert sum(q in prompt for q in questions) == 1, prompt  # its own question only


def test_a_follow_up_after_a_crash_continues_the_conversation_whose_interrupted_answer_it_extends(engine, repository, tmp_path):
    """The app was killed while answering; the client had received more of the answer than was saved. Its follow-up
    continues that conversation (no copy with the partial answer taken for complete), and the answer keeps the
    longer text the client holds, still marked as interrupted."""
    from assistant.dialogue import DialogueManager
    from assistant.media import MediaLoader
    from assistant.turn_queue import TurnQueue
    from storage.database import open_database, sqlite_url
    from storage.instances import INTERRUPTED, Instances
    from tests.engine_helpers import RecordingEngine, ready_host

    conversation = repository.create_conversation("Tell me a story")
    repository.add_user_message(conversation.id, "Tell me a story", [])
    killed = repository.start_assistant_message(conversation.id)
    repository.update_message_text(killed.id, "Once upon a")  # the last save before the kill
    Instances(open_database(sqlite_url(tmp_path / "db.sqlite3")), "restarted:1").mark_interrupted(startup=True)
    received = "Once upon a time there was a fox called Ruby."

    recording = RecordingEngine(engine, max_new_tokens=6)
    dialogue = DialogueManager(repository, ready_host(recording), MediaLoader(), TurnQueue())
    with served(dialogue, tmp_path) as client:
        response = client.chat.completions.with_raw_response.create(model="demo", max_tokens=6, messages=[
            {"role": "user", "content": "Tell me a story"}, {"role": "assistant", "content": received},
            {"role": "user", "content": "What was the fox called?"}])
    assert response.headers["x-conversation-id"] == conversation.id
    assert len(repository.list_conversations()) == 1
    story, answer, question, reply = repository.get_messages(conversation.id)
    assert (answer.id, answer.text, answer.status.value, answer.error) == (killed.id, received, "error", INTERRUPTED)
    assert question.text == "What was the fox called?" and reply.status.value == "complete"
    assert "fox called Ruby" in engine.processor.tokenizer.decode(recording.prepared[-1]["input_ids"][0])


def test_faults_of_the_machine_are_503_with_retry_after_and_a_generation_servers_a_502(engine, tmp_path, monkeypatch, png_file):
    import sqlite3

    import storage.database
    from assistant.dialogue import DialogueManager
    from assistant.media import MediaLoader
    from assistant.turn_queue import TurnQueue
    from domain.errors import EngineUnavailable
    from storage.blobs import BlobStore
    from storage.database import open_database, sqlite_url
    from storage.repository import ConversationRepository
    from tests.engine_helpers import RecordingEngine, ready_host

    monkeypatch.setattr(storage.database, "BUSY_TIMEOUT_S", 0.5, raising=False)
    repository = ConversationRepository(open_database(sqlite_url(tmp_path / "db.sqlite3")), BlobStore(tmp_path / "files"))

    class ServerDown(RecordingEngine):
        down = False

        def prepare(self, model_input):
            if self.down:
                raise EngineUnavailable("The generation server did not answer; check that it is running.")
            return super().prepare(model_input)

    engine = ServerDown(engine, max_new_tokens=4)
    dialogue = DialogueManager(repository, ready_host(engine), MediaLoader(), TurnQueue())
    question = [{"role": "user", "content": "Hello?"}]
    with served(dialogue, tmp_path) as client:
        # Another program holds the database's lock.
        other_program = sqlite3.connect(tmp_path / "db.sqlite3", isolation_level=None)
        other_program.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(openai.APIStatusError) as busy:
                client.chat.completions.create(model="demo", messages=question)
        finally:
            other_program.execute("ROLLBACK")
        assert busy.value.status_code == 503 and busy.value.response.headers["retry-after"].isdigit()
        assert busy.value.body["type"] == "server_error" and busy.value.code == "service_unavailable"
        assert "database is busy" in busy.value.message

        # The disk is full when the question's image is written.
        import storage.blobs

        class NoSpace:
            @staticmethod
            def copyfileobj(source, target, length=0):
                raise OSError(28, "No space left on device")

        with monkeypatch.context() as patch:
            patch.setattr(storage.blobs, "shutil", NoSpace)
            with pytest.raises(openai.APIStatusError) as full:
                client.chat.completions.create(model="demo", messages=[{"role": "user", "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": data_url(png_file, "image/png")}}]}])
        assert full.value.status_code == 503 and full.value.response.headers["retry-after"].isdigit()
        assert "disk is full" in full.value.message

        # The generation server fails: its fault, not ours.
        engine.down = True
        with pytest.raises(openai.APIStatusError) as remote:
            client.chat.completions.create(model="demo", messages=question)
        assert remote.value.status_code == 502 and remote.value.code == "engine_unavailable"
        assert "generation server" in remote.value.message
        stream = client.chat.completions.create(model="demo", messages=question, stream=True)
        with pytest.raises(openai.APIError) as streamed:
            list(stream)
        assert streamed.value.code == "engine_unavailable"
        engine.down = False
        assert client.chat.completions.create(model="demo", messages=question, max_tokens=4).choices[0].message.content
