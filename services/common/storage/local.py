"""Object storage in a local directory: the embedded default.

Each key is a symbolic link at ``<root>/<key>`` to an immutable file ``.blobs/<sha256>-<uuid>``
that holds its bytes; the link's target records the sha256. A write fills a new blob (temp file,
fsync, rename), then commits by renaming a new link over the key: one atomic rename, so a reader
sees the old blob or the new one, and a writer killed at any point leaves at most an unreferenced
blob, never a visible partial key. The replaced blob is deleted after the commit; a reader that
raced with that deletion reads the link again. Paths stay browsable (``cat <root>/<key>`` works),
and keys never start with a dot, so they cannot reach ``.blobs`` or ``.tmp``.
"""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from services.common.storage.base import (
    BlobInfo,
    BlobNotFound,
    IntegrityError,
    InvalidKey,
    ObjectStore,
    StorageError,
    sha256_hex,
    validate_key,
)

_BLOBS, _TMP = ".blobs", ".tmp"
_BLOB_NAME = re.compile(r"([0-9a-f]{64})-[0-9a-f]{32}")
_READ_ATTEMPTS = 10


class LocalStore(ObjectStore):
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        for sub in (_BLOBS, _TMP):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def _blob(self, key: str) -> str | None:
        """The blob name the key's link points to; None when the key does not exist."""
        path = self._path(key)
        try:
            name = Path(os.readlink(path)).name
        except FileNotFoundError:
            return None
        except OSError:  # exists but is no link: a file copied in by hand
            if path.is_file():
                raise IntegrityError(f"{self.uri(key)}: no sha256 recorded (a plain file, not written through "
                                     "rsir storage), so it cannot be verified") from None
            return None
        if not _BLOB_NAME.fullmatch(name):
            raise IntegrityError(f"{self.uri(key)}: link to {name!r} is not an rsir blob")
        return name

    def put(self, key: str, data: bytes) -> BlobInfo:
        path = self._path(key)
        info = BlobInfo(key, self.uri(key), sha256_hex(data), len(data))
        blob = f"{info.sha256}-{uuid.uuid4().hex}"
        tmp = self.root / _TMP / uuid.uuid4().hex
        try:
            fd, name = tempfile.mkstemp(dir=self.root / _TMP)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(name, self.root / _BLOBS / blob)
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                old = self._blob(key)
            except IntegrityError:  # a plain file is simply replaced
                old = None
            os.symlink(os.path.relpath(self.root / _BLOBS / blob, path.parent), tmp)
            os.replace(tmp, path)  # the commit
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"{self.uri(key)}: write failed ({exc})") from None
        if old is not None and old != blob:
            (self.root / _BLOBS / old).unlink(missing_ok=True)
        return info

    def head(self, key: str) -> BlobInfo | None:
        for _ in range(_READ_ATTEMPTS):
            blob = self._blob(key)
            if blob is None:
                return None
            try:
                size = (self.root / _BLOBS / blob).stat().st_size
            except FileNotFoundError:
                continue  # replaced since we read the link
            return BlobInfo(key, self.uri(key), blob[:64], size)
        return None

    def _read(self, key: str) -> tuple[bytes, str]:
        for _ in range(_READ_ATTEMPTS):
            blob = self._blob(key)
            if blob is None:
                break
            try:
                with open(self.root / _BLOBS / blob, "rb") as f:
                    return f.read(), blob[:64]
            except FileNotFoundError:
                continue  # replaced (and the old blob deleted) since we read the link: read it again
        raise BlobNotFound(f"{self.uri(key)}: no such blob")

    def delete(self, key: str) -> None:
        blob = self._blob(key)
        self._path(key).unlink(missing_ok=True)
        if blob is not None:
            (self.root / _BLOBS / blob).unlink(missing_ok=True)

    def list(self, prefix: str = "") -> list[str]:
        keys = []
        for folder, dirs, files in os.walk(self.root):
            if folder == str(self.root):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                path = Path(folder, name)
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix) and path.is_symlink() and _BLOB_NAME.fullmatch(Path(os.readlink(path)).name):
                    keys.append(key)
        return sorted(keys)

    def _base(self) -> str:
        return "file://" + quote(self.root.as_posix())

    def uri(self, key: str) -> str:
        return f"{self._base()}/{validate_key(key)}"

    def key(self, uri: str) -> str:
        parts = urlsplit(uri)
        root = self.root.as_posix().rstrip("/") + "/"
        path = unquote(parts.path)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost") or not path.startswith(root):
            raise InvalidKey(f"{uri!r} is not in this service's storage ({self._base()}/...)")
        return validate_key(path[len(root):])

    def check(self) -> None:
        try:
            with tempfile.TemporaryFile(dir=self.root / _TMP) as probe:
                probe.write(b"ok")
        except OSError as exc:
            raise StorageError(f"{self.root}: not writable ({exc})") from None
