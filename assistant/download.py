"""Downloading one file of weights (Whisper's, a Piper voice's) with progress, through a `.partial` file that only a
whole download replaces the target with. Knows nothing of what the file is; its callers word the failures."""

from __future__ import annotations

import hashlib
import http.client
import urllib.request
from collections.abc import Callable
from pathlib import Path

from domain.i18n import Text, t

CHUNK = 1 << 20


class DownloadFailed(Exception):
    """`reason` says why, in a few words (no network, an HTTP error, the connection dropped)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def download(url: str, target: Path, label: Text, progress: Callable[[Text | str, float | None], None]) -> str:
    """`url` into `target`, saying "Downloading {label}: n of m MB" as it goes; the sha256 of what came. Leaves
    nothing behind when it fails (DownloadFailed)."""
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                progress(t("progress.downloading", what=label, mb=done / 2**20, total_mb=total / 2**20), done / total if total else None)
        if total and done != total:
            raise http.client.IncompleteRead(b"", total - done)
    except (OSError, http.client.HTTPException) as error:
        partial.unlink(missing_ok=True)
        raise DownloadFailed(str(getattr(error, "reason", None) or error or type(error).__name__)) from None
    partial.replace(target)
    return digest.hexdigest()
