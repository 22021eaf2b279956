"""Helpers shared by the test modules (fixtures stay in conftest.py): waiting, the app as a child process, what a user
does from outside the page, a turn read to the end, storage on disk, and the bad-input corpus. No torch here:
tests/engine_helpers.py holds what wraps the real engine; tests/browser_helpers.py what drives the page;
tests/media_factory.py what makes media."""

from __future__ import annotations

import base64
import http.client
import io
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from domain import limits
from domain.settings import AnswerDetails, GenerationSettings
from domain.types import MediaFile, MediaKind, Status
from tests import media_factory as make

ROOT = Path(__file__).resolve().parent.parent

T = TypeVar("T")


# --- waiting ----------------------------------------------------------------------------------------------------------


def wait_until(
    condition: Callable[[], T],
    timeout: float = 20.0,
    interval: float = 0.1,
    message: str | Callable[[], str] = "the condition did not come true",
) -> T:
    """Poll `condition` until it returns something truthy and return that; fail after `timeout` seconds with `message`
    (a callable is called then, to show the state at that moment). `condition` may raise to fail at once."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message() if callable(message) else message} (waited {timeout:g} s)")
        time.sleep(interval)
    return result


def settled_answer(repository, conversation_id: int, timeout: float = 20.0, interval: float = 0.2):
    """The conversation's last message once storage holds it no longer streaming (finished, stopped or failed),
    for an answer ended in another thread or process."""

    def settled():
        message = repository.get_messages(conversation_id)[-1]
        return message if message.status is not Status.STREAMING else None

    return wait_until(settled, timeout, interval, f"the last message of conversation {conversation_id} still streams")


def wait_for_http(proc: subprocess.Popen, url: str, timeout: float, output: Callable[[], str], name: str) -> None:
    """Until GET `url` answers 200; fails with the process's output when it exits first or takes too long."""

    def serving() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"{name} exited with {proc.returncode}:\n{output()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    wait_until(serving, timeout, 0.3, lambda: f"{name} did not come up:\n{output()}")


# --- the app as a child process ---------------------------------------------------------------------------------------


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
        wait_for_http(self.proc, self.url, timeout, self.output, "the app")

    def wait_for_log(self, text: str, timeout: float = 60) -> None:
        def logged() -> bool:
            if text in self.output():
                return True
            if self.proc.poll() is not None:
                raise AssertionError(f"{text!r} not in the app's output (it exited):\n{self.output()}")
            return False

        wait_until(logged, timeout, 0.2, lambda: f"{text!r} not in the app's output:\n{self.output()}")

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


def add_user(data_dir, name: str, password: str) -> None:
    subprocess.run(
        [sys.executable, "run.py", "adduser", name, "--password-stdin", "--data-dir", str(data_dir)],
        input=password + "\n", text=True, cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip


def data_url(path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def urllib_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def upload(app, name: str, size: int) -> tuple[int, bytes]:
    """POST a file of `size` zero bytes to the app's upload route, as a page does: (status, body)."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    connection = http.client.HTTPConnection("127.0.0.1", app.port, timeout=60)
    try:
        connection.putrequest("POST", "/gradio_api/upload")
        connection.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        connection.putheader("Content-Length", str(len(head) + size + len(tail)))
        connection.endheaders()
        connection.send(head)
        chunk = b"\0" * (1 << 20)
        sent = 0
        try:
            while sent < size:
                n = min(len(chunk), size - sent)
                connection.send(chunk[:n])
                sent += n
            connection.send(tail)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused while still arriving
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# --- a turn through a dialogue manager, read to the end ---------------------------------------------------------------


def run(manager, conversation_id, text, uploads=(), stop=None):
    return list(manager.send(conversation_id, text, list(uploads), stop or threading.Event()))


def send(manager, conversation_id, text, uploads=(), stop=None):
    events = list(manager.send(conversation_id, text, list(uploads), stop or threading.Event()))
    return events[0].conversation.id, events[-1].message


# --- storage on disk --------------------------------------------------------------------------------------------------


def repository_at(folder: Path):
    """A ConversationRepository on a new SQLite database and blob folder under `folder`."""
    from storage.blobs import BlobStore
    from storage.database import open_database, sqlite_url
    from storage.repository import ConversationRepository

    folder.mkdir(parents=True, exist_ok=True)
    return ConversationRepository(open_database(sqlite_url(folder / "db.sqlite3")), BlobStore(folder / "files"))


def stored(data_dir, user: str | None = None):
    """The app's conversations as its database holds them (read from this process)."""
    from cli.data import open_storage

    storage = open_storage(data_dir, None)
    conversations, users = storage.conversations, storage.users
    return conversations.for_owner(users.id_of(user))


def rich_history(repository, tmp_path):
    """Two conversations: branches (a regenerated answer, an edited question), files, settings, details, a pin."""
    picture, sound = make.png(tmp_path / "p.png"), make.write_tone(tmp_path / "s.wav", 0.6)
    settings = GenerationSettings(system_prompt="Be brief.", temperature=0.3, seed=5)
    details = AnswerDetails(model="demo", quant="none", settings=settings, prompt_tokens=10, answer_tokens=3, first_token_s=0.1, tokens_per_s=20.0)
    question = repository.add_user_message(
        None,
        "What is this? 这是什么？",
        [MediaFile(picture, "p.png", MediaKind.IMAGE, "image/png"), MediaFile(sound, "s.wav", MediaKind.AUDIO, "audio/wav")],
        new_title="Pictures",
        settings=settings,
    )
    conversation_id = question.conversation_id
    for text in ("A square.", "A red square."):
        reply = repository.start_assistant_message(conversation_id, parent_id=question.id)
        repository.finish_message(reply.id, text, Status.COMPLETE, details=details)
    edited = repository.edit_user_message(question.id, "Describe it")
    reply = repository.start_assistant_message(conversation_id, parent_id=edited.id)
    repository.finish_message(reply.id, "Half an ans", Status.STOPPED)
    repository.set_pinned(conversation_id, True)
    other = repository.add_user_message(None, "hello", [], new_title="Other")
    repository.set_archived(other.conversation_id, True)
    return conversation_id


def snapshot(tmp_path: Path) -> tuple:
    """Everything stored: row counts of every table and the blob files."""
    db = sqlite3.connect(tmp_path / "db.sqlite3")
    try:
        counts = tuple(
            db.execute(f"select count(*) from {table}").fetchone()[0]
            for table in ("conversation", "message", "attachment", "message_attachment")
        )
    finally:
        db.close()
    blobs = sorted(str(p) for p in (tmp_path / "files").rglob("*") if p.is_file())
    return counts, blobs


def zipped(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


# --- the bad-input corpus: hostile and odd messages and files, each made on the spot ----------------------------------

Uploads = list[tuple[Path, str]]


@dataclass(frozen=True)
class Case:
    text: str | Callable[[], str]
    files: Callable[[Path], Uploads]  # builds the files in the given folder: (path, name shown to the user)
    refused: str | None = None  # a regex the refusal must match; None: accepted
    kinds: tuple[MediaKind, ...] = ()
    saved_text: str | None = None  # what the message must be stored as, when not the text itself


def one(name: str, build: Callable[[Path], Path]) -> Callable[[Path], Uploads]:
    return lambda folder: [(build(folder / name), name)]


def none(folder: Path) -> Uploads:
    return []


def nine_images(folder: Path) -> Uploads:
    return [(make.png(folder / f"p{i}.png"), f"p{i}.png") for i in range(9)]


def written(data: bytes) -> Callable[[Path], Path]:
    def build(path: Path) -> Path:
        path.write_bytes(data)
        return path

    return build


def sparse(size: int) -> Callable[[Path], Path]:
    def build(path: Path) -> Path:
        with open(path, "wb") as f:
            f.truncate(size)
        return path

    return build


def vanished(folder: Path) -> Uploads:
    return [(folder / "gone.png", "gone.png")]


def truncated_png(path: Path) -> Path:
    return make.truncated(path, make.noisy_image(path.with_suffix(".full.png")))


def truncated_jpeg(path: Path) -> Path:
    return make.truncated(path, make.noisy_image(path.with_suffix(".full.jpg"), fmt="JPEG"))


def truncated_flac(path: Path) -> Path:
    full = make.write_tone(path.with_suffix(".full.flac"), 2.0, 22050, "flac", "flac", "mono")
    return make.truncated(path, full, keep=0.7)  # the header and some frames parse; decoding fails later


def long_video(path: Path) -> Path:
    return make.write_video(path, seconds=limits.MAX_VIDEO_SECONDS + 2, fps=1, size=(32, 32))


def truncated_mp4(path: Path) -> Path:
    return make.truncated(path, make.write_video(path.with_suffix(".full.mp4"), seconds=1.0), keep=0.5)


def long_wav(path: Path) -> Path:
    return make.write_tone(path, limits.MAX_AUDIO_SECONDS + 2, rate=8000)


CASES: dict[str, Case] = {
    # refused, naming the problem
    "truncated-png": Case("what is this?", one("cut.png", truncated_png), r"“cut.png” is damaged or incomplete"),
    "truncated-jpeg": Case("what is this?", one("cut.jpg", truncated_jpeg), r"“cut.jpg” is damaged or incomplete"),
    "aspect-402x2": Case("a line", one("line.png", lambda p: make.png(p, (402, 2))), r"“line.png” is 402×2 pixels.*200 times"),
    "decompression-bomb": Case("big", one("bomb.png", make.bomb_png), r"“bomb.png” has too many pixels"),
    "over-50-megapixels": Case("big", one("huge.png", lambda p: make.bomb_png(p, (8000, 7500))), r"“huge.png” has 60 megapixels; the limit is 50"),
    "truncated-flac": Case("listen", one("cut.flac", truncated_flac), r"“cut.flac” is damaged"),
    "zero-bytes": Case("empty?", one("empty.wav", written(b"")), r"“empty.wav” is empty"),
    "text-named-png": Case("look", one("notes.png", written(b"just some notes\n" * 20)), r"“notes.png” is not an image or audio file"),
    "pdf-named-jpg": Case("look", one("doc.jpg", written(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n")), r"“doc.jpg” is not an image or audio"),
    "random-bytes-wav": Case("listen", one("noise.wav", written(bytes(range(256)) * 64)), r"“noise.wav” is not an image or audio"),
    "video-without-frames": Case("watch", one("empty.mp4", make.frameless_video), r"“empty.mp4” contains no video frames"),
    "video-over-2-minutes": Case("watch", one("long.mp4", long_video), r"“long.mp4” is longer than 2 minutes"),
    "cut-mp4": Case("watch", one("cut.mp4", truncated_mp4), r"“cut.mp4” is damaged or incomplete"),
    "audio-over-5-minutes": Case("listen", one("long.wav", long_wav), r"“long.wav” is longer than 5 minutes"),
    "silent-recording": Case("hear anything?", one("quiet.wav", make.silence_wav), r"“quiet.wav” is silent: nothing was heard"),
    "recording-under-half-a-second": Case("hm", one("click.wav", lambda p: make.write_tone(p, 0.3)), r"“click.wav” is only 0.3 seconds long"),
    "file-over-25MB": Case("big", one("big.wav", sparse(limits.MAX_FILE_BYTES + 1)), r"“big.wav” is 25.0 MB; the limit is 25 MB"),
    "nine-files": Case("many", nine_images, r"9 files are attached; a message can carry at most 8"),
    "file-vanished": Case("here", vanished, r"“gone.png” did not arrive"),
    "one-megabyte-message": Case(lambda: "x" * 1_000_000, none, r"1,000,000 characters long; the limit is 20,000"),
    "lone-surrogate": Case("broken \ud83d emoji", none, r"not valid text"),
    "nothing": Case("", none, r"Type a message"),
    "only-whitespace-and-controls": Case(" \n\t\x00\x07 ", none, r"Type a message"),
    # accepted, and answered
    "animated-gif": Case("which frame?", one("anim.gif", make.animated_gif), kinds=(MediaKind.IMAGE,)),
    "cmyk-jpeg": Case("print colours", one("cmyk.jpg", make.cmyk_jpeg), kinds=(MediaKind.IMAGE,)),
    "16-bit-png": Case("deep", one("deep.png", make.sixteen_bit_png), kinds=(MediaKind.IMAGE,)),
    "one-pixel": Case("tiny", one("dot.png", lambda p: make.png(p, (1, 1))), kinds=(MediaKind.IMAGE,)),
    "aspect-exactly-200": Case("a line", one("line.png", lambda p: make.png(p, (400, 2))), kinds=(MediaKind.IMAGE,)),
    "audio-over-30-seconds": Case("listen", one("long.wav", lambda p: make.write_tone(p, 45, rate=8000)), kinds=(MediaKind.AUDIO,)),
    "m4a-with-cover-art": Case("song", one("song.m4a", make.m4a_with_cover_art), kinds=(MediaKind.AUDIO,)),
    "video-named-like-audio": Case("listen", one("clip.ogg", make.video_with_sound), kinds=(MediaKind.VIDEO,)),
    "one-frame-video": Case("a still", one("still.mov", make.still_video), kinds=(MediaKind.IMAGE,)),
    "mp4-of-sound-only": Case("listen", one("voice.mp4", lambda p: make.write_tone(p, 2.0, fmt="mp4", codec="aac")), kinds=(MediaKind.AUDIO,)),
    "control-characters": Case("red\x1b[31m alert\x00\x07 now", none, saved_text="red[31m alert now"),
    "right-to-left": Case("مرحبا \u202eשלום\u202c hello", none),
    "html-and-script-text": Case("<script>alert(1)</script> <img src=x onerror=alert(2)>", none),
}
assert len(CASES) >= 25


def case_text(case: Case) -> str:
    return case.text() if callable(case.text) else case.text
