"""Attachment bytes on disk, content-addressed by sha256 so each distinct file is stored once."""

from __future__ import annotations

import hashlib
import mimetypes
import os
import shutil
import tempfile
from pathlib import Path


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str, mime: str) -> Path:
        # The extension lets browsers (and Gradio) tell an image from an audio clip.
        return self.root / sha256[:2] / (sha256 + suffix_for(mime))

    def put(self, source: Path, mime: str) -> tuple[str, int]:
        """Store the file's bytes (once); return (sha256, size)."""
        digest = hashlib.sha256()
        with open(source, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        sha256 = digest.hexdigest()
        target = self.path_for(sha256, mime)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            # Copy to a temporary name and rename: readers never see a half-written blob.
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
            os.close(fd)
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        return sha256, target.stat().st_size


_SUFFIXES = {"image/jpeg": ".jpg", "audio/mpeg": ".mp3", "audio/wav": ".wav", "audio/webm": ".webm", "audio/mp4": ".m4a"}


def suffix_for(mime: str) -> str:
    return _SUFFIXES.get(mime) or mimetypes.guess_extension(mime) or ""
