"""Shared fixtures: the demo checkpoint (built once per run), media made on the spot, an app process. Plain helpers
that tests import live in tests/helpers.py, tests/engine_helpers.py and tests/browser_helpers.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory) -> Path:
    from assistant.demo_model import ensure_demo_model

    return ensure_demo_model(tmp_path_factory.mktemp("models") / "demo", "qwen2.5-omni")


@pytest.fixture(scope="session")
def engine(demo_model_dir):
    from assistant.loader import ModelSpec, Quant, load_engine
    from tests.engine_helpers import GREEDY

    return load_engine(
        ModelSpec(str(demo_model_dir), Quant.NONE, demo=True),
        lambda message, fraction: None,
        max_new_tokens=24,
        generation_kwargs=GREEDY,
    )


@pytest.fixture(scope="session")
def demo_whisper_path(tmp_path_factory) -> Path:
    from assistant.demo_whisper import ensure_demo_whisper

    return ensure_demo_whisper(tmp_path_factory.mktemp("whisper") / "whisper-demo.pt")


@pytest.fixture(scope="session")
def whisper_model(demo_whisper_path):
    from assistant.transcribe import load_whisper

    return load_whisper(str(demo_whisper_path), demo_whisper_path.parent, "cpu", lambda *_: None)


@pytest.fixture(scope="session")
def demo_speech(tmp_path_factory):
    """The demo's text-to-speech engine: Piper with two tiny random voices (English, Chinese), built once."""
    from assistant.loader import make_speech

    return make_speech("auto", True, tmp_path_factory.mktemp("speech-data"))


_family_dirs: dict[str, Path] = {}


@pytest.fixture(scope="session")
def family_model_dir(tmp_path_factory):
    """family name -> its demo checkpoint, each built once per run."""
    from assistant.demo_model import ensure_demo_model

    def build(name: str) -> Path:
        if name not in _family_dirs:
            _family_dirs[name] = ensure_demo_model(tmp_path_factory.mktemp("models") / name, name)
        return _family_dirs[name]

    return build


@pytest.fixture
def transcripts(tmp_path, repository):
    """Transcripts in the same database as `repository`."""
    from storage.database import open_database, sqlite_url
    from storage.transcripts import TranscriptRepository

    return TranscriptRepository(open_database(sqlite_url(tmp_path / "db.sqlite3")))


@pytest.fixture
def png_file(tmp_path) -> Path:
    from PIL import Image

    path = tmp_path / "red-car.png"
    Image.new("RGB", (96, 64), (220, 20, 20)).save(path)
    return path


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory) -> Path:
    """Real speech from espeak-ng (22.05 kHz mono WAV). Where espeak-ng is missing (the GPU machine), SPEECH_WAV
    names a file it made elsewhere."""
    if os.environ.get("SPEECH_WAV"):
        return Path(os.environ["SPEECH_WAV"])
    path = tmp_path_factory.mktemp("speech") / "question.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "What colour is the car in the picture?"], check=True)
    return path


@pytest.fixture(scope="session")
def speech_video(tmp_path_factory, speech_wav) -> Path:
    """An mp4 (H.264, AAC) of a square moving for three seconds while espeak-ng asks about it."""
    from assistant.media import decode_audio
    from tests.media_factory import write_video

    path = tmp_path_factory.mktemp("video") / "question.mp4"
    return write_video(path, seconds=3.0, audio_codec="aac", sound=decode_audio(speech_wav))


@pytest.fixture
def repository(tmp_path):
    from storage.blobs import BlobStore
    from storage.database import open_database, sqlite_url
    from storage.repository import ConversationRepository

    return ConversationRepository(open_database(sqlite_url(tmp_path / "db.sqlite3")), BlobStore(tmp_path / "files"))


@pytest.fixture
def start_app(tmp_path):
    from tests.helpers import AppProcess

    started: list[AppProcess] = []

    def start(*args: str) -> AppProcess:
        app = AppProcess(list(args), tmp_path / f"app-{len(started)}.log")
        started.append(app)
        return app

    yield start
    for app in started:
        app.kill()


@pytest.fixture(scope="module")
def api(tmp_path_factory, demo_model_dir):
    """One app (no accounts, so loopback needs no key) and its data dir, for the module."""
    from tests.helpers import ready_app

    folder = tmp_path_factory.mktemp("api")
    app = ready_app(folder, "--model", str(demo_model_dir), "--data-dir", str(folder / "data"), "--api-queue-limit", "0")
    yield app, folder / "data"
    app.kill()


@pytest.fixture
def client(api):
    """An `openai` client for the module's `api` app."""
    import openai

    app, _ = api
    return openai.OpenAI(base_url=f"{app.url}/v1", api_key="not-needed", max_retries=0, timeout=120)


@pytest.fixture
def model(client) -> str:
    return client.models.list().data[0].id


@pytest.fixture
def page(engine, repository, tmp_path, monkeypatch, capsys):
    """Import through the page's handler: the file as Gradio leaves an upload; returns the summary it showed."""
    from types import SimpleNamespace

    from tests.engine_helpers import make_manager
    from ui.exports import ExportStore
    from ui.transfer import TransferHandlers

    uploads = tmp_path / "uploads"
    uploads.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(uploads))
    manager = make_manager(engine, repository)
    handlers = TransferHandlers(lambda request: manager, ExportStore(tmp_path / "exports"), lambda request: None)

    def run(data: bytes, name: str = "export.zip") -> str:
        upload = uploads / "h0" / name
        upload.parent.mkdir(exist_ok=True)
        upload.write_bytes(data)
        capsys.readouterr()
        handlers.import_file(str(upload), SimpleNamespace(username=None, session_hash="s"))
        return capsys.readouterr().out  # outside a running page, gr.Info prints its message

    return run


@pytest.fixture(scope="session")
def browser():
    if not shutil.which("chromium"):
        pytest.fail("Debian's chromium is missing: run the tests through scripts/test.sh, which installs it")
    from playwright.sync_api import sync_playwright

    from tests.browser_helpers import CHROMIUM_FLAGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def media(tmp_path, speech_wav):
    """For reuse: two images of the same size (the same number of placeholder tokens, told apart only by what they
    are) and a spoken question."""
    from tests.media_factory import png

    return {
        "red": png(tmp_path / "red.png", (96, 64), (220, 20, 20)),
        "blue": png(tmp_path / "blue.png", (96, 64), (20, 20, 220)),
        "speech": speech_wav,
    }


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server on loopback for the whole run (tests/postgres.py)."""
    from tests.postgres import PostgresServer

    try:
        server = PostgresServer()
    except RuntimeError as error:
        pytest.fail(str(error))
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """A new, empty database of each kind the app runs on."""
    from storage.database import sqlite_url

    if request.param == "sqlite":
        return sqlite_url(tmp_path / "db.sqlite3")
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture
def repository_on_each_database(database_url, tmp_path):
    from storage.blobs import BlobStore
    from storage.database import open_database
    from storage.repository import ConversationRepository

    return ConversationRepository(open_database(database_url), BlobStore(tmp_path / "files"))
