"""Shared fixtures: the demo checkpoint (built once per run), media made on the spot, an app process."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GREEDY = {"do_sample": False}


def generate_whole(engine, model_input) -> str:
    """The reference answer: the same inputs through transformers' own generate(), no streamer, no threads."""
    import torch

    with torch.inference_mode():
        inputs = engine.prepare(model_input)
        args = dict(inputs)
        for key, value in args.items():
            if value.is_floating_point():
                args[key] = value.to(engine.float_dtype)
        output = engine.model.generate(**args, max_new_tokens=engine.max_new_tokens, **engine.generation_kwargs)
    return engine.processor.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory) -> Path:
    from assistant.demo_model import ensure_demo_model

    return ensure_demo_model(tmp_path_factory.mktemp("models") / "demo", "qwen2.5-omni")


@pytest.fixture(scope="session")
def engine(demo_model_dir):
    from assistant.loader import ModelSpec, Quant, load_engine

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


def make_manager(engine, repository, transcriber=None):
    """A DialogueManager over `engine` (already loaded) and `repository`, as run.py wires it."""
    from assistant.dialogue import DialogueManager
    from assistant.media import MediaLoader
    from assistant.model_host import ModelHost
    from assistant.turn_queue import TurnQueue

    host = ModelHost(lambda progress: engine).start()
    assert host.wait(30)
    return DialogueManager(repository, host, MediaLoader(), TurnQueue(), transcriber=transcriber)


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


@pytest.fixture
def repository(tmp_path):
    from storage.blobs import BlobStore
    from storage.database import open_database, sqlite_url
    from storage.repository import ConversationRepository

    return ConversationRepository(open_database(sqlite_url(tmp_path / "db.sqlite3")), BlobStore(tmp_path / "files"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppProcess:
    """`python run.py` as a child process, as a user would start it."""

    def __init__(self, args: list[str], log_path: Path, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "run.py"), "--port", str(self.port), *args],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_page(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"app exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"page did not come up in {timeout}s:\n{self.output()}")

    def wait_for_log(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not in the app's output:\n{self.output()}")

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, like a crash or a power cut."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._log.close()


def ready_app(folder: Path, *args: str) -> AppProcess:
    """`python run.py ARGS` logging into `folder`, once its page is up and its model loaded."""
    folder.mkdir(parents=True, exist_ok=True)
    app = AppProcess(list(args), folder / "app.log")
    app.wait_for_page()
    app.wait_for_log("model ready")
    return app


@pytest.fixture
def start_app(tmp_path):
    started: list[AppProcess] = []

    def start(*args: str) -> AppProcess:
        app = AppProcess(list(args), tmp_path / f"app-{len(started)}.log")
        started.append(app)
        return app

    yield start
    for app in started:
        app.kill()


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser():
    if not shutil.which("chromium"):
        pytest.fail("Debian's chromium is missing: run the tests through scripts/test.sh, which installs it")
    from playwright.sync_api import sync_playwright

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
