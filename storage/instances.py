"""Which app instances are alive, so that answers a dead one left streaming are kept and marked as interrupted.

Each instance (its host and port) beats every BEAT_S; one whose last beat is older than STALE_S is gone. An answer
records the instance that writes it while it streams. At startup an instance marks its own earlier run's answers,
those with no writer (written before revision 0009) and those of gone instances; later, every beat marks those
of instances that have gone since. Answers a live instance is still writing are left alone. Knows nothing of the UI.
"""

from __future__ import annotations

import logging
import socket
import threading
from datetime import timedelta

from sqlalchemy import delete, or_, select, update

from domain.types import INTERRUPTED, Status
from storage.database import Database, utc_now
from storage.records import stored_text
from storage.schema import InstanceRow, MessageRow

log = logging.getLogger(__name__)

BEAT_S = 10.0
STALE_S = 60.0
FORGOTTEN_AFTER = timedelta(days=7)  # a gone instance's row is deleted after this long


def instance_name(port: int) -> str:
    """This instance as its answers name it: the host and the port it serves on (a restart is the same instance)."""
    return f"{socket.gethostname()}:{port}"


class Instances:
    def __init__(self, database: Database, me: str, stale_s: float = STALE_S):
        self._read = database.read
        self._write = database.write
        self.me = me
        self._stale = timedelta(seconds=stale_s)
        self._stopped = threading.Event()

    def beat(self) -> None:
        with self._write.begin() as session:
            row = session.get(InstanceRow, self.me)
            if row is None:
                session.add(InstanceRow(id=self.me, heartbeat_at=utc_now()))
            else:
                row.heartbeat_at = utc_now()
            session.execute(delete(InstanceRow).where(InstanceRow.heartbeat_at < utc_now() - FORGOTTEN_AFTER))

    def _alive(self):
        """The ids of the instances that beat lately, this one included once it has."""
        return select(InstanceRow.id).where(InstanceRow.heartbeat_at >= utc_now() - self._stale)

    def alive(self) -> list[str]:
        with self._read() as session:
            return list(session.scalars(self._alive()))

    def mark_interrupted(self, startup: bool = False) -> int:
        """Mark the answers left streaming by gone instances (and, at startup, by this one's earlier run) as
        interrupted, their text kept; returns how many."""
        orphaned = or_(MessageRow.writer.is_(None), MessageRow.writer.not_in(self._alive()))
        if startup:
            orphaned = or_(orphaned, MessageRow.writer == self.me)
        else:
            orphaned = orphaned & (MessageRow.writer != self.me)
        with self._write.begin() as session:
            result = session.execute(
                update(MessageRow)
                .where(MessageRow.status == Status.STREAMING.value, orphaned)
                .values(status=Status.ERROR.value, error=stored_text(INTERRUPTED), writer=None)
            )
            return result.rowcount

    def start(self, interval_s: float = BEAT_S) -> int:
        """Beat, mark what earlier runs and gone instances left, and go on doing both in a daemon thread; returns
        how many answers were marked now."""
        self.beat()
        marked = self.mark_interrupted(startup=True)
        threading.Thread(target=self._run, args=(interval_s,), name="heartbeat", daemon=True).start()
        return marked

    def stop(self) -> None:
        self._stopped.set()

    def _run(self, interval_s: float) -> None:
        while not self._stopped.wait(interval_s):
            try:
                self.beat()
                marked = self.mark_interrupted()
                if marked:
                    log.info("kept %d answer(s) that a stopped app instance left unfinished", marked)
            except Exception:  # noqa: BLE001 - the database may be away for a while; the next beat tries again
                log.warning("could not record this instance's heartbeat", exc_info=True)
