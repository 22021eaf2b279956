"""AnswerWriter: one answer's text, saved while it streams, and its end, written from a thread of its own.

The answer lives in memory; the stream never waits for storage. Its text is saved at most every `interval_s` while
it grows, and a save that fails (a full disk, a database locked by another program) is logged and tried again with
the next text, never ending the answer. Its end (text, status, details) is written until the write succeeds, however
long the fault lasts, or until the app stops: a running app never leaves an answer `streaming`. Knows nothing of SQL,
models or pages; the repository is handed in.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from domain.i18n import Text
from domain.limits import FINISH_WAIT_S
from domain.settings import AnswerDetails
from domain.types import Status

if TYPE_CHECKING:
    from storage.repository import ConversationRepository

log = logging.getLogger(__name__)

# Between tries of a failed final write: the first soon (a lock often passes), then less and less often.
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0


@dataclass(frozen=True)
class _End:
    text: str
    status: Status
    error: Text | str | None
    details: AnswerDetails | None


class AnswerWriter:
    def __init__(self, repository: ConversationRepository, message_id: int, interval_s: float):
        self._repository = repository
        self._message_id = message_id
        self._interval_s = interval_s
        self._changed = threading.Condition()  # guards what follows; notified whenever any of it changes
        self._text = ""  # the answer so far, as the reader has it
        self._saved = ""  # what storage holds (the answer is created empty)
        self._end: _End | None = None
        self._failing = False  # the latest write failed
        self._stored = False  # the end is in storage
        threading.Thread(target=self._run, name=f"answer-writer-{message_id}", daemon=True).start()

    def update(self, text: str) -> None:
        """The answer so far; saved soon, without waiting for it."""
        with self._changed:
            self._text = text
            self._changed.notify_all()

    def finish(self, text: str, status: Status, error: Text | str | None, details: AnswerDetails | None) -> bool:
        """Write the answer's end. Waits for it up to FINISH_WAIT_S, and not at all while writes are failing, so a
        reader gets its answer whatever storage does; returns whether it is stored (if not, the writer goes on)."""
        with self._changed:
            self._end = _End(text, status, error, details)
            self._changed.notify_all()
            self._changed.wait_for(lambda: self._stored or self._failing, FINISH_WAIT_S)
            return self._stored

    def _run(self) -> None:
        last_save = float("-inf")
        while True:
            with self._changed:
                while self._end is None:
                    due = last_save + self._interval_s - time.monotonic()
                    if self._text != self._saved and due <= 0:
                        break
                    self._changed.wait(due if self._text != self._saved else None)
                end, text = self._end, self._text
            if end is not None:
                self._write_end(end)
                return
            last_save = time.monotonic()
            # A failed save is logged; the text is kept in memory and the next save, or the end, writes it.
            if self._attempt(lambda: self._repository.update_message_text(self._message_id, text), "save", log_it=True):
                self._saved = text

    def _write_end(self, end: _End) -> None:
        delay, tries = RETRY_FIRST_S, 0

        def write() -> None:
            self._repository.finish_message(self._message_id, end.text, end.status, end.error, end.details)

        while not self._attempt(write, "store", log_it=tries == 0 or tries % 20 == 19):
            tries += 1
            time.sleep(delay)  # a full disk or a locked database passes: try again, less and less often
            delay = min(delay * 2, RETRY_MAX_S)
        if tries:
            log.info("stored answer %s after %d failed tries", self._message_id, tries)
        with self._changed:
            self._stored = True
            self._changed.notify_all()

    def _attempt(self, write, what: str, log_it: bool) -> bool:
        """Run one write; whether it succeeded."""
        try:
            write()
            ok = True
        except Exception:  # noqa: BLE001 - a fault of storage passes: the callers try again
            ok = False
            if log_it:
                log.warning("could not %s answer %s; it is kept in memory and tried again", what, self._message_id, exc_info=True)
        with self._changed:
            self._failing = not ok
            self._changed.notify_all()
        return ok
