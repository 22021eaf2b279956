"""Whisper transcripts: openai-whisper's real transcription path on a tiny random checkpoint, stored once per file,
shown, searched and exported; a Whisper failure never costs the chat."""

from __future__ import annotations

import io
import json
import threading
import time
import zipfile

import pytest

from assistant.dialogue import ReplyFinished
from assistant.media import SAMPLE_RATE, MediaLoader, decode_audio
from assistant.demo_whisper import DEMO_WHISPER_OPTIONS
from assistant.transcribe import Transcriber
from domain.errors import ModelLoadError
from domain.types import Status, TranscriptStatus
from tests.engine_helpers import GREEDY, make_manager
from tests.media_factory import FORMATS, write_audio
from ui import render

WAIT_S = 120


class CountingWhisper:
    """The real Whisper model, counting how often it transcribes."""

    def __init__(self, model):
        self.model = model
        self.calls = 0
        self.started_at: float | None = None

    def transcribe(self, audio, **options):
        self.calls += 1
        self.started_at = self.started_at or time.monotonic()
        return self.model.transcribe(audio, **options)


def send(manager, conversation_id, text, uploads=()):
    return list(manager.send(conversation_id, text, list(uploads), threading.Event()))


def wait_for(transcriber: Transcriber, messages) -> None:
    for message in messages:
        for attachment in message.attachments:
            assert transcriber.wait(attachment.sha256, WAIT_S)


@pytest.mark.parametrize("suffix, fmt, codec", [(s, f, c) for s, f, c, _, _ in FORMATS if s != ".flac"])
def test_speech_in_every_browser_and_phone_format_is_transcribed(suffix, fmt, codec, whisper_model, speech_wav, tmp_path, engine, repository, transcripts):
    speech = decode_audio(speech_wav)
    path = write_audio(tmp_path / f"question{suffix}", speech, SAMPLE_RATE if codec != "libopus" else 16000, fmt, codec)
    transcriber = Transcriber(transcripts, MediaLoader(), lambda progress: whisper_model, "demo Whisper (random weights)", options=DEMO_WHISPER_OPTIONS).start()
    manager = make_manager(engine, repository, transcriber)
    events = send(manager, None, "", [(path, path.name)])
    wait_for(transcriber, [events[0].message])

    [attachment] = repository.get_messages(events[0].conversation.id)[0].attachments
    transcript = attachment.transcript
    assert transcript.status is TranscriptStatus.DONE, transcript
    assert transcript.text.strip()  # random weights say something meaningless, but something
    assert transcript.language  # Whisper's language detection ran
    assert transcript.seconds == pytest.approx(len(speech) / SAMPLE_RATE, abs=0.15)
    assert transcript.model == "demo Whisper (random weights)"


def test_a_file_sent_twice_is_transcribed_once_and_shown_under_both(whisper_model, speech_wav, engine, repository, transcripts):
    counting = CountingWhisper(whisper_model)
    transcriber = Transcriber(transcripts, MediaLoader(), lambda progress: counting, "demo Whisper (random weights)", options=DEMO_WHISPER_OPTIONS).start()
    manager = make_manager(engine, repository, transcriber)
    first = send(manager, None, "listen", [(speech_wav, "q.wav")])
    conversation_id = first[0].conversation.id
    wait_for(transcriber, [first[0].message])
    second = send(manager, conversation_id, "and again", [(speech_wav, "again.wav")])
    other = send(manager, None, "elsewhere", [(speech_wav, "q.wav")])
    wait_for(transcriber, [second[0].message, other[0].message])
    manager.open_messages(conversation_id)  # opening the chat queues nothing either

    assert counting.calls == 1
    messages = repository.get_messages(conversation_id)
    shown = [m.attachments[0].transcript for m in messages if m.attachments]
    assert len(shown) == 2 and shown[0] == shown[1] and shown[0].status is TranscriptStatus.DONE
    # The page shows it under the audio, saying it is the demo's meaningless text.
    [chat_user] = [m for m in render.chat_messages(messages[:1], notes=render.AudioNotes(enabled=True)) if m["role"] == "user"]
    line = next(item for item in chat_user["content"] if isinstance(item, str) and item.startswith("🗣"))
    assert shown[0].text in line and "random demo Whisper" in line and "Transcript" in line


def test_an_answer_never_waits_for_the_transcript(whisper_model, speech_wav, engine, repository, transcripts):
    gate = threading.Event()

    def slow_load(progress):
        gate.wait(WAIT_S)  # Whisper is still downloading
        return whisper_model

    transcriber = Transcriber(transcripts, MediaLoader(), slow_load, "demo Whisper (random weights)", options=DEMO_WHISPER_OPTIONS).start()
    manager = make_manager(engine, repository, transcriber)
    events = send(manager, None, "what did I say?", [(speech_wav, "q.wav")])
    assert isinstance(events[-1], ReplyFinished) and events[-1].message.status is Status.COMPLETE
    sha = events[0].message.attachments[0].sha256
    assert transcriber.is_pending(sha)  # the answer came first
    pending = render.chat_messages(repository.get_messages(events[0].conversation.id), notes=render.audio_notes(manager))
    assert "🗣 *Transcribing…*" in pending[0]["content"]
    gate.set()
    assert transcriber.wait(sha, WAIT_S)
    assert repository.get_messages(events[0].conversation.id)[0].attachments[0].transcript.status is TranscriptStatus.DONE


def test_whisper_starts_after_the_answers_first_token_so_it_never_slows_the_prefill(whisper_model, speech_wav, engine, repository, transcripts):
    from assistant.engine import TransformersEngine

    class FirstTokenClock(TransformersEngine):
        first_at: float | None = None

        def stream(self, *args, **kwargs):
            for chunk in super().stream(*args, **kwargs):
                self.first_at = self.first_at or time.monotonic()
                yield chunk

    clocked = FirstTokenClock(engine.model, engine.processor, engine.info, engine.family, max_new_tokens=24, generation_kwargs=GREEDY)
    counting = CountingWhisper(whisper_model)
    transcriber = Transcriber(transcripts, MediaLoader(), lambda progress: counting, "demo Whisper (random weights)", options=DEMO_WHISPER_OPTIONS).start()
    manager = make_manager(clocked, repository, transcriber)
    events = send(manager, None, "what did I say?", [(speech_wav, "q.wav")])
    wait_for(transcriber, [events[0].message])
    assert clocked.first_at is not None and counting.started_at is not None
    assert counting.started_at > clocked.first_at


def test_when_whisper_cannot_be_had_the_chat_works_and_the_transcript_says_why(speech_wav, engine, repository, transcripts):
    def no_network(progress):
        raise ModelLoadError("Whisper base could not be downloaded (no network connection).")

    transcriber = Transcriber(transcripts, MediaLoader(), no_network, "Whisper base").start()
    manager = make_manager(engine, repository, transcriber)
    events = send(manager, None, "what did I say?", [(speech_wav, "q.wav")])
    assert events[-1].message.status is Status.COMPLETE
    wait_for(transcriber, [events[0].message])
    messages = repository.get_messages(events[0].conversation.id)
    transcript = messages[0].attachments[0].transcript
    assert transcript.status is TranscriptStatus.FAILED and "could not be downloaded" in str(transcript.error)
    chat = render.chat_messages(messages, notes=render.audio_notes(manager))
    assert any("No transcript" in item and "no network" in item for item in chat[0]["content"] if isinstance(item, str))
    assert send(manager, events[0].conversation.id, "still there?")[-1].message.status is Status.COMPLETE


def test_transcripts_are_searched_and_exported_and_imported(whisper_model, speech_wav, engine, repository, transcripts, tmp_path):
    from assistant.imports import import_archive
    from storage.exchange import export_zip

    transcriber = Transcriber(transcripts, MediaLoader(), lambda progress: whisper_model, "demo Whisper (random weights)", options=DEMO_WHISPER_OPTIONS).start()
    manager = make_manager(engine, repository, transcriber)
    events = send(manager, None, "voice note", [(speech_wav, "note.wav")])
    wait_for(transcriber, [events[0].message])
    transcript = repository.get_messages(events[0].conversation.id)[0].attachments[0].transcript
    query = transcript.text.strip()[:10].strip()  # some of what was "heard"
    assert len(query) >= 3
    hits = repository.search(query)
    assert [hit.message_id for hit in hits] == [events[0].message.id]
    assert hits[0].snippet.startswith("🗣") and query in hits[0].snippet

    buffer = io.BytesIO()
    export_zip(repository.export_conversations(), buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as archive:
        manifest = json.loads(archive.read("conversations.json"))
        markdown = next(archive.read(n).decode() for n in archive.namelist() if n.startswith("markdown/"))
    exported = manifest["conversations"][0]["messages"][0]["attachments"][0]["transcript"]
    assert exported["text"] == transcript.text and exported["language"] == transcript.language
    assert f"> 🗣 {transcript.text}" in markdown

    from storage.blobs import BlobStore
    from storage.database import open_database, sqlite_url
    from storage.repository import ConversationRepository

    fresh = ConversationRepository(open_database(sqlite_url(tmp_path / "fresh.sqlite3")), BlobStore(tmp_path / "fresh-files"))
    stored = []
    import_archive(io.BytesIO(buffer.getvalue()), lambda conversations: stored.extend(fresh.import_conversations(conversations)))
    [summary] = stored
    assert fresh.get_messages(summary.id)[0].attachments[0].transcript == transcript
    assert [hit.conversation_id for hit in fresh.search(query)] == [summary.id]


def test_revision_0006_adds_transcripts_to_an_existing_database_and_deleting_the_chat_removes_them(tmp_path, speech_wav):
    from sqlalchemy import text

    from storage.blobs import BlobStore
    from storage.database import create_db_engine, migrate, open_database, sqlite_url
    from storage.repository import ConversationRepository
    from storage.transcripts import TranscriptRepository
    from domain.types import MediaFile, MediaKind, Transcript

    url = sqlite_url(tmp_path / "old.sqlite3")
    old = create_db_engine(url)
    migrate(old, "0005")
    old.dispose()
    database = open_database(url)  # upgrades to head, as the app does at startup
    with database.read() as session:
        assert int(session.execute(text("select version_num from alembic_version")).scalar()) >= 6  # at head, past 0006
    repository = ConversationRepository(database, BlobStore(tmp_path / "files"))
    store = TranscriptRepository(database)
    message = repository.add_user_message(None, "voice", [MediaFile(speech_wav, "q.wav", MediaKind.AUDIO, "audio/wav")], new_title="voice")
    sha = message.attachments[0].sha256
    assert store.save(sha, Transcript(TranscriptStatus.DONE, text="the red umbrella", language="en", seconds=2.0, model="m"))
    assert store.get(sha).text == "the red umbrella"
    assert [hit.message_id for hit in repository.search("umbrella")] == [message.id]
    assert [hit.message_id for hit in repository.search("红")] == []  # the scan path (short query) runs too

    repository.delete_conversation(message.conversation_id)
    assert store.get(sha) is None and repository.search("umbrella") == []
    assert not store.save(sha, Transcript(TranscriptStatus.DONE, text="late", model="m"))  # the file is gone: nothing stored


@pytest.fixture
def served(tmp_path):
    """A local HTTP server over tmp_path/www: (folder, base URL)."""
    import functools
    import http.server

    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_named_whisper_weights_are_downloaded_once_into_the_data_dir_with_progress(served, demo_whisper_path, tmp_path, monkeypatch, speech_wav, transcripts, engine, repository):
    import hashlib

    import whisper

    root, base = served
    data = demo_whisper_path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    (root / sha).mkdir()
    (root / sha / "tiny-test.pt").write_bytes(data)
    # Whisper's own table of names to URLs (which carry each file's SHA-256), pointed at the local server.
    monkeypatch.setitem(whisper._MODELS, "tiny-test", f"{base}/{sha}/tiny-test.pt")
    monkeypatch.setitem(whisper._MODELS, "corrupt-test", f"{base}/{'0' * 64}/corrupt.pt")
    (root / ("0" * 64)).mkdir()
    (root / ("0" * 64) / "corrupt.pt").write_bytes(data)
    from assistant.transcribe import load_whisper

    seen: list[tuple[str, float | None]] = []
    downloads = tmp_path / "data" / "models" / "whisper"
    transcriber = Transcriber(
        transcripts, MediaLoader(), lambda progress: load_whisper("tiny-test", downloads, "cpu", lambda m, f: (seen.append((m, f)), progress(m, f))),
        "Whisper tiny-test", options=DEMO_WHISPER_OPTIONS,
    ).start()
    manager = make_manager(engine, repository, transcriber)
    events = send(manager, None, "", [(speech_wav, "q.wav")])
    wait_for(transcriber, [events[0].message])
    assert (downloads / "tiny-test.pt").read_bytes() == data
    assert any(str(m).startswith("Downloading Whisper tiny-test") and f == 1.0 for m, f in seen), seen
    assert repository.get_messages(events[0].conversation.id)[0].attachments[0].transcript.status is TranscriptStatus.DONE

    # Already there and intact: not fetched again.
    seen.clear()
    load_whisper("tiny-test", downloads, "cpu", lambda m, f: seen.append((m, f)))
    assert not any(str(m).startswith("Downloading") for m, _ in seen)
    # A corrupted download is refused and removed; a name Whisper does not know gets the list of those it does.
    with pytest.raises(ModelLoadError, match="corrupted"):
        load_whisper("corrupt-test", downloads, "cpu", lambda *_: None)
    assert not list(downloads.glob("corrupt*"))
    with pytest.raises(ModelLoadError, match=r"“huge” is neither a Whisper checkpoint file nor one of Whisper's models \(.*turbo"):
        load_whisper("huge", downloads, "cpu", lambda *_: None)
