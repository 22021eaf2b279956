"""Removes stored files that no row refers to: what an app killed between writing a file and committing the
transaction that links it left behind (an upload, an import), and the temporary files of a write it killed.

Files younger than GRACE_S are left alone, since the transaction that will link them may still be running (a large
import takes a while; storage.blobs touches a file it links again). Runs at startup and every SWEEP_S in a daemon
thread, like storage/instances.py's heartbeat. Knows nothing of models or the UI.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import select

from storage.blobs import BlobStore, is_older
from storage.database import Database
from storage.schema import AttachmentRow

log = logging.getLogger(__name__)

GRACE_S = 3600.0
SWEEP_S = 3600.0
_BATCH = 500  # sha256s checked per query


class OrphanSweeper:
    def __init__(self, database: Database, blobs: BlobStore, grace_s: float = GRACE_S):
        self._read = database.read
        self._write = database.write
        self._blobs = blobs
        self._grace_s = grace_s
        self._stopped = threading.Event()

    def sweep(self) -> tuple[int, int]:
        """Remove the orphans older than the grace period; returns (files, bytes) removed."""
        candidates = list(self._blobs.stale_files(self._grace_s))
        if not candidates:
            return 0, 0
        removed = size = 0
        for start in range(0, len(candidates), _BATCH):
            batch = candidates[start : start + _BATCH]
            shas = {sha for _, sha in batch if sha is not None}
            # Under the write lock (SQLite's, for the whole database): no transaction can link one of these files
            # between the check and the unlink; one that linked it since the listing has touched it, so the age is
            # checked again here.
            with self._write.begin() as session:
                linked = set(session.scalars(select(AttachmentRow.sha256).where(AttachmentRow.sha256.in_(shas)))) if shas else set()
                cutoff = time.time() - self._grace_s
                for path, sha in batch:
                    if sha in linked or not is_older(path, cutoff):
                        continue
                    try:
                        bytes_ = path.stat().st_size
                        path.unlink()
                    except FileNotFoundError:
                        continue
                    removed, size = removed + 1, size + bytes_
        return removed, size

    def start(self, interval_s: float = SWEEP_S) -> tuple[int, int]:
        """Sweep now, then every `interval_s` in a daemon thread; returns what was removed now."""
        swept = self.sweep()
        threading.Thread(target=self._run, args=(interval_s,), name="orphan-sweep", daemon=True).start()
        return swept

    def stop(self) -> None:
        self._stopped.set()

    def _run(self, interval_s: float) -> None:
        while not self._stopped.wait(interval_s):
            try:
                files, size = self.sweep()
                if files:
                    log.info("removed %d stored file(s) (%.1f MB) that no message refers to", files, size / 1e6)
            except Exception:  # noqa: BLE001 - the database may be away for a while; the next sweep tries again
                log.warning("could not look for stored files that no message refers to", exc_info=True)
