"""The app on PostgreSQL: two instances sharing one database and one data directory see each other's conversations
and never corrupt one that both write to at once; and the page works end to end on it."""

from __future__ import annotations

import base64
import threading

import openai
import pytest

from tests.browser_helpers import TIMEOUT_MS, VIEWPORT, expect, open_page, wait_for_answer
from tests.helpers import AppProcess
from tests.media_factory import png


def start(demo_model_dir, url: str, data_dir, log) -> AppProcess:
    app = AppProcess(["--model", str(demo_model_dir), "--db", url, "--data-dir", str(data_dir), "--max-new-tokens", "12"], log)
    app.wait_for_page()
    app.wait_for_log("model ready")
    return app


def open_db(url: str, data_dir):
    from storage.blobs import BlobStore
    from storage.database import open_database
    from storage.repository import ConversationRepository

    return ConversationRepository(open_database(url), BlobStore(data_dir / "files"))


def check_tree(url: str, repository, conversation_id: str) -> None:
    """One tree per conversation: every parent is a message of it, positions 0..n-1, the active branch reads."""
    from sqlalchemy import text

    from storage.database import create_db_engine

    messages = {m.id: m for m in repository.export_conversations([conversation_id])[0].messages}
    assert all(m.parent_id is None or m.parent_id in messages for m in messages.values())
    with create_db_engine(url).connect() as connection:
        rows = connection.execute(text("select position from message where conversation_id = :c"), {"c": conversation_id})
        assert sorted(p for (p,) in rows) == list(range(len(messages)))
    assert repository.get_messages(conversation_id)


def test_two_instances_share_one_database_and_never_corrupt_a_conversation(postgres, demo_model_dir, tmp_path):
    url, data_dir = postgres.new_database(), tmp_path / "data"
    first = start(demo_model_dir, url, data_dir, tmp_path / "first.log")
    second = start(demo_model_dir, url, data_dir, tmp_path / "second.log")
    try:
        clients = [openai.OpenAI(base_url=f"{app.url}/v1", api_key="none", max_retries=0, timeout=120) for app in (first, second)]
        image = "data:image/png;base64," + base64.b64encode(png(tmp_path / "red.png").read_bytes()).decode()
        question = {"role": "user", "content": [{"type": "text", "text": "Shared?"}, {"type": "image_url", "image_url": {"url": image}}]}
        made = clients[0].chat.completions.with_raw_response.create(model="demo", messages=[question])
        conversation_id = made.headers["x-conversation-id"]
        history = [question, {"role": "assistant", "content": made.parse().choices[0].message.content}]

        # The second instance continues what the first stored (the image comes from the shared data dir).
        follow_up = clients[1].chat.completions.with_raw_response.create(
            model="demo", messages=[*history, {"role": "user", "content": "From the other instance"}]
        )
        assert follow_up.headers["x-conversation-id"] == conversation_id

        # Both answer requests at once, each repeating what it last saw: whichever way each lands (continuing
        # the conversation, or a new one when the other instance got there first), nothing is lost or mixed up.
        errors, sent = [], []
        barrier = threading.Barrier(2)

        def write(client, name: str) -> None:
            seen = [*history, {"role": "user", "content": "From the other instance"},
                    {"role": "assistant", "content": follow_up.parse().choices[0].message.content}]
            for i in range(4):
                barrier.wait()
                try:
                    reply = client.chat.completions.with_raw_response.create(
                        model="demo", messages=[*seen, {"role": "user", "content": f"{name} {i}"}]
                    )
                except openai.OpenAIError as error:
                    errors.append(error)
                    continue
                answer = reply.parse().choices[0].message.content
                sent.append((f"{name} {i}", answer, reply.headers["x-conversation-id"]))
                seen += [{"role": "user", "content": f"{name} {i}"}, {"role": "assistant", "content": answer}]

        threads = [threading.Thread(target=write, args=(client, name)) for client, name in zip(clients, ("one", "two"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == [] and len(sent) == 8
        assert conversation_id in {c for _, _, c in sent}
        repository = open_db(url, data_dir)
        for question_text, answer_text, stored_in in sent:
            check_tree(url, repository, stored_in)
            messages = repository.export_conversations([stored_in])[0].messages
            [asked] = [m for m in messages if m.text == question_text]
            assert [m.text for m in messages if m.parent_id == asked.id and m.role.value == "assistant"] == [answer_text]
    finally:
        first.kill()
        second.kill()


@pytest.mark.browser
def test_two_pages_on_two_instances_write_to_one_conversation_at_once(browser, postgres, demo_model_dir, tmp_path):
    """The page on PostgreSQL: a conversation made on one instance is listed on the other; both add to it at the
    same moment; both answers are stored in one sound tree; search finds a substring inside a Japanese word."""
    url, data_dir = postgres.new_database(), tmp_path / "data"
    apps = [start(demo_model_dir, url, data_dir, tmp_path / f"app{i}.log") for i in (1, 2)]
    try:
        pages = []
        for app in apps:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(TIMEOUT_MS)
            open_page(page, app.url)
            pages.append(page)
        first, second = pages
        first.locator("#composer textarea").fill("Where is 東京タワー exactly?")
        first.locator("#composer textarea").press("Enter")
        wait_for_answer(first, 1)
        second.reload(wait_until="load")
        second.locator("#conversation-list label").filter(has_text="東京タワー").click()
        expect(second.locator("#chat .message-row.bot-row")).to_have_count(1)
        for page, text in ((first, "Asked on the first"), (second, "Asked on the second")):
            page.locator("#composer textarea").fill(text)
        for page in pages:
            page.locator("#composer textarea").press("Enter")
        for page in pages:  # each page then shows its branch: its own question answered (and maybe the other's)
            page.wait_for_function(
                """() => { const stop = document.querySelector('#stop'), box = document.querySelector('#composer textarea');
                   return document.querySelectorAll('#chat .message-row.bot-row').length >= 2 && stop.disabled
                       && !box.disabled && box.value === ''; }"""
            )

        repository = open_db(url, data_dir)
        [conversation] = repository.list_conversations()
        check_tree(url, repository, conversation.id)
        messages = repository.export_conversations([conversation.id])[0].messages
        for asked in ("Asked on the first", "Asked on the second"):
            [question] = [m for m in messages if m.text == asked]
            assert [m.status.value for m in messages if m.parent_id == question.id and m.role.value == "assistant"] == ["complete"]

        second.locator("#search input").press_sequentially("京タ")  # a substring inside a word: pg_trgm
        expect(second.locator("#search-results")).to_contain_text("東京タワー")
        for page in pages:
            page.close()
    finally:
        for app in apps:
            app.kill()
