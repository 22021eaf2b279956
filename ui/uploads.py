"""Gradio's upload folder: files a browser sent, which the app deletes once they are stored or refused."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)


def upload_folder() -> Path:
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder()).resolve()


def discard_uploads(paths: Iterable[str | Path]) -> None:
    """Delete uploads (and the per-upload folder Gradio made for each); paths outside the upload folder are left alone."""
    root = upload_folder()
    for path in paths:
        path = Path(path).resolve()
        if not path.is_relative_to(root) or path == root:
            continue
        try:
            path.unlink(missing_ok=True)
            if path.parent != root and not any(path.parent.iterdir()):
                path.parent.rmdir()
        except OSError:
            log.warning("could not delete the upload %s", path, exc_info=True)


def clear_stale_uploads(own_folder: Path) -> int:
    """At startup: uploads left by an earlier run belong to pages that are gone. Only in the app's own folder."""
    import shutil

    root = upload_folder()
    if root != Path(own_folder).resolve() or not root.is_dir():
        return 0  # GRADIO_TEMP_DIR points elsewhere: not ours to empty
    removed = 0
    for entry in root.iterdir():
        removed += sum(1 for p in entry.rglob("*") if p.is_file()) if entry.is_dir() else 1
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    return removed
