"""The files an import brings, copied to a scratch folder once each, within their limits; knows nothing of formats.

An export may name the same zip member from many messages, or embed the same picture many times: each member is
read once (by name) and each distinct file is kept once (by SHA-256), on disk rather than in memory. Whether a
file is an image or a sound is for the assistant layer to find out; nothing here trusts what an export says.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from domain import limits
from domain.errors import InvalidInput
from domain.i18n import Text, t

_CHUNK = 1 << 20
# What a damaged or unusual member raises while being read (a bad CRC, a cut deflate stream, an unknown
# compression method, a password): each is the zip's fault, told as such.
_DAMAGED = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, NotImplementedError, RuntimeError, OSError)


@dataclass(frozen=True)
class KeptFile:
    path: Path  # in the scratch folder, named by its SHA-256
    sha256: str


def too_big(filename: str, size: int) -> Text:
    """The sentence for a file over the per-file limit (the same words an upload gets)."""
    return t("file.too_big", name=filename, mb=size / 2**20, limit_mb=limits.MAX_FILE_BYTES / 2**20)


class ImportFiles:
    """A scratch folder the caller owns (and deletes); each distinct file once."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._members: dict[str, KeptFile] = {}

    def member(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> KeptFile:
        """The member's bytes, read the first time it is asked for; its declared size is checked by the caller."""
        if info.filename not in self._members:
            with open_member(archive, info) as source:
                self._members[info.filename] = self._keep(_chunks(source, info.filename), info.filename)
        return self._members[info.filename]

    def data(self, data: bytes) -> KeptFile:
        """Bytes held in memory (a decoded data: URL)."""
        return self._keep([data], "an embedded file")

    def _keep(self, chunks: Iterable[bytes], name: str) -> KeptFile:
        digest, size = hashlib.sha256(), 0
        fd, name = tempfile.mkstemp(dir=self.folder, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    size += len(chunk)
                    if size > limits.MAX_FILE_BYTES:  # callers check sizes first: this holds should a header lie
                        raise InvalidInput(t("import.member_too_big", name=name))
                    digest.update(chunk)
                    out.write(chunk)
            target = self.folder / digest.hexdigest()
            os.replace(name, target)  # the same bytes twice: one file
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        return KeptFile(target, digest.hexdigest())


def open_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo):
    try:
        return archive.open(info)
    except _DAMAGED:
        raise damaged(info.filename) from None


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytearray:
    """A member's bytes, never more than `limit` of them (whatever its header says); the caller checked the header.
    One buffer, grown in place: a manifest of hundreds of MB is held once, not twice."""
    data = bytearray()
    with open_member(archive, info) as source:
        for chunk in _chunks(source, info.filename, limit + 1):
            data += chunk
    if len(data) > limit:  # zipfile stops at the declared size; this holds should it ever not
        raise InvalidInput(t("import.member_too_big", name=info.filename))
    return data


def _chunks(source, name: str, limit: int | None = None):
    left = limit
    while left is None or left > 0:
        try:
            chunk = source.read(_CHUNK if left is None else min(_CHUNK, left))
        except _DAMAGED:
            raise damaged(name) from None
        if not chunk:
            return
        if left is not None:
            left -= len(chunk)
        yield chunk


def damaged(name: str) -> InvalidInput:
    return InvalidInput(t("import.member_damaged", name=name))

