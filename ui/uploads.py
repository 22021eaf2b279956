"""Gradio's upload folder: files a browser sent, which the app deletes once they are stored or refused."""

from __future__ import annotations

import logging
import re
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


def instance_folder(instance: str) -> str:
    """The folder of one app instance's uploads (its host:port made a file name): instances sharing a data directory
    each keep their own, so that one starting does not delete what another's pages have sent."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", instance)


def clear_stale_uploads(root: Path, own: str, others_alive: Iterable[str] = ()) -> int:
    """At startup: the uploads in `root` left by this instance's earlier run and by instances that are gone (their
    pages are gone too); those of instances still alive stay. Only when `root/own` is where Gradio puts uploads."""
    import shutil

    root = Path(root).resolve()
    if upload_folder() != root / own or not root.is_dir():
        return 0  # GRADIO_TEMP_DIR points elsewhere: not ours to empty
    keep = {instance_folder(name) for name in others_alive} - {own}
    removed = 0
    for entry in root.iterdir():
        if entry.name in keep:
            continue
        targets = entry.iterdir() if entry.name == own and entry.is_dir() else [entry]
        for target in list(targets):
            removed += sum(1 for p in target.rglob("*") if p.is_file()) if target.is_dir() else 1
            shutil.rmtree(target) if target.is_dir() else target.unlink()
    return removed
