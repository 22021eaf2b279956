"""Attachment bytes on disk, content-addressed by sha256 so each distinct file is stored once.

Files are written before the transaction that refers to them commits, so a kill between the two leaves a file no
row refers to; `stale_files` lists those candidates (and temporary files a killed write left) for storage.orphans.
Knows nothing of the database.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import shutil
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from storage import faults

TEMPORARY_PREFIX = ".incoming-"
_BLOB_NAME = re.compile(r"^([0-9a-f]{64})(\.[A-Za-z0-9]{1,8})?$")


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int
    path: Path
    created: bool  # False when an intact copy was already there


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str, mime: str) -> Path:
        # The extension lets browsers (and Gradio) tell an image from an audio clip.
        return self.root / sha256[:2] / (sha256 + suffix_for(mime))

    def put(self, source: Path, mime: str) -> StoredBlob:
        """Store the file's bytes durably, once; an existing copy is trusted only if its size and hash match."""
        sha256, size = file_digest(source)

        def copy(out) -> None:
            with open(source, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)

        return self._store(sha256, size, mime, copy)

    def _store(self, sha256: str, size: int, mime: str, write) -> StoredBlob:
        target = self.path_for(sha256, mime)
        if _touch(target) and target.stat().st_size == size and file_digest(target)[0] == sha256:
            # Touched first: a file about to be linked again is young, so the orphan sweep's grace period keeps it.
            return StoredBlob(sha256, size, target, created=False)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # Write to a temporary name, flush it to the disk, then rename: after a crash or power cut the blob
            # is either absent or whole, never empty or half-written.
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TEMPORARY_PREFIX)
            try:
                with os.fdopen(fd, "wb") as out:
                    write(out)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            _fsync_dir(target.parent)
        except OSError as error:
            unavailable = faults.classify(error)  # a full disk is the machine's fault, and says so
            if unavailable is None:
                raise
            raise unavailable from error
        return StoredBlob(sha256, size, target, created=True)

    def discard(self, blob: StoredBlob) -> None:
        """Remove a blob this store just created and nothing refers to."""
        if blob.created:
            blob.path.unlink(missing_ok=True)

    def stale_files(self, older_than_s: float) -> Iterator[tuple[Path, str | None]]:
        """(path, sha256) of every stored file last written or linked more than `older_than_s` ago; the sha256 is
        None for a temporary file a write left behind. Files of other names are none of this store's."""
        cutoff = time.time() - older_than_s
        for folder in self.root.iterdir():
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                match = _BLOB_NAME.match(path.name)
                if match is None and not path.name.startswith(TEMPORARY_PREFIX):
                    continue
                if is_older(path, cutoff):
                    yield path, match[1] if match else None


def is_older(path: Path, cutoff: float) -> bool:
    """Whether the file exists and was last modified before `cutoff` (a time.time())."""
    try:
        return path.stat().st_mtime < cutoff
    except FileNotFoundError:
        return False


def _touch(path: Path) -> bool:
    """Mark the file as just used; False if there is no such file."""
    try:
        os.utime(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return path.is_file()


def file_digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _fsync_dir(directory: Path) -> None:
    # The rename itself lives in the directory entry; without this a power cut can forget it.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_SUFFIXES = {"image/jpeg": ".jpg", "audio/mpeg": ".mp3", "audio/wav": ".wav", "audio/webm": ".webm", "audio/mp4": ".m4a",
             "video/x-matroska": ".mkv", "video/matroska": ".mkv"}


def suffix_for(mime: str) -> str:
    return _SUFFIXES.get(mime) or mimetypes.guess_extension(mime) or ""
