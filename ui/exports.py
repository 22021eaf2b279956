"""Exported zips waiting for their one download: each under an unguessable token, for the user who made it only,
deleted once downloaded (or after EXPORT_TTL_S if it never is). The URL holds the token and nothing of the path.

Knows nothing of the zip format (storage.exchange writes it) nor of how a request's user is found (the route is
given `owner`, as the attachment route is).
"""

from __future__ import annotations

import logging
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from domain.limits import EXPORT_TTL_S

log = logging.getLogger(__name__)

ROUTE = "/exports/{token}"
SWEEP_INTERVAL_S = 300
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")  # secrets.token_urlsafe(32)


@dataclass(frozen=True)
class _Export:
    owner: int | None
    path: Path
    filename: str  # what the browser saves it as
    made_at: float  # the store's clock


class ExportStore:
    """The exports of this app instance, in `folder` (one folder per export, named by its token)."""

    def __init__(self, folder: Path, ttl_s: float = EXPORT_TTL_S, clock: Callable[[], float] = time.time):
        self.folder = Path(folder)
        self.ttl_s = ttl_s
        self._clock = clock  # wall-clock seconds, as file times are
        self._pending: dict[str, _Export] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def start(self) -> ExportStore:
        """Empty the folder (an earlier run's tokens died with it), then sweep in the background, so an export
        nobody downloads is gone after the hour even if nothing else happens."""
        shutil.rmtree(self.folder, ignore_errors=True)

        def run():
            while not self._stopped.wait(SWEEP_INTERVAL_S):
                self.sweep()

        threading.Thread(target=run, name="export-sweeper", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped.set()

    def add(self, owner: int | None, filename: str, write: Callable[[Path], None]) -> str:
        """Have `write` make the file, and keep it for `owner`'s one download; returns its token."""
        self.sweep()
        token = secrets.token_urlsafe(32)
        folder = self.folder / token
        folder.mkdir(parents=True)
        path = folder / "export.zip"
        try:
            write(path)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        with self._lock:
            self._pending[token] = _Export(owner, path, filename, self._clock())
        return token

    def take(self, token: str, owner: int | None) -> tuple[Path, str] | None:
        """(file, name to save it as) for its owner's first request, which uses the token up; else None. Someone
        else's request leaves it in place (the token is the owner's to spend)."""
        if not _TOKEN.match(token):
            return None
        with self._lock:
            export = self._pending.get(token)
            if export is None or export.owner != owner or self._expired(export):
                return None
            del self._pending[token]
        return export.path, export.filename

    def discard(self, path: Path) -> None:
        """Delete a taken export (after its download)."""
        shutil.rmtree(path.parent, ignore_errors=True)

    def sweep(self) -> int:
        """Delete exports older than the TTL: those never downloaded, and any whose download broke off."""
        with self._lock:
            expired = [token for token, export in self._pending.items() if self._expired(export)]
            for token in expired:
                del self._pending[token]
            pending = set(self._pending)
        removed = 0
        if not self.folder.is_dir():
            return 0
        for entry in self.folder.iterdir():
            if entry.name in pending:
                continue
            try:
                if self._clock() - entry.stat().st_mtime < self.ttl_s:
                    continue  # being written right now, or taken and still downloading
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                removed += 1
            except FileNotFoundError:
                continue  # its download ended meanwhile
            except OSError:
                log.warning("could not delete the old export %s", entry, exc_info=True)
        return removed

    def _expired(self, export: _Export) -> bool:
        return self._clock() - export.made_at >= self.ttl_s


def export_route(exports: ExportStore, owner: Callable[[object], int | None]):
    """A Starlette route for the server's routes: the zip, to its owner, once. `owner(request)` is the signed-in
    user's id (None without accounts), raising NotSignedIn when the app has accounts and the session is not valid."""
    from starlette.background import BackgroundTask
    from starlette.responses import FileResponse, PlainTextResponse
    from starlette.routing import Route

    from domain.errors import NotSignedIn
    from ui.security import FILE_POLICY

    def take(request):
        try:
            return exports.take(request.path_params["token"], owner(request))
        except NotSignedIn:
            return None

    async def download(request):
        import anyio

        taken = await anyio.to_thread.run_sync(take, request)  # the owner check reads the database
        if taken is None or not taken[0].is_file():
            return PlainTextResponse("Not found", status_code=404)
        path, filename = taken
        return FileResponse(
            path,
            media_type="application/zip",
            filename=filename,
            content_disposition_type="attachment",
            headers={"Cache-Control": "no-store", "Content-Security-Policy": FILE_POLICY},
            background=BackgroundTask(exports.discard, path),
        )

    # GET only: a HEAD (a link checker, a preview) must not use up the one download.
    return Route(ROUTE, download, methods=["GET"])


def export_url(request, token: str) -> str:
    """The route's URL for this request's origin (as the page's attachment links are made)."""
    from ui.files import app_root

    return f"{app_root(request) or ''}{ROUTE.format(token=token)}"
