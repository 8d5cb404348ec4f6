"""Atomic saves: a file is either its old content or its new one, never half written.

Each write goes to a temporary file next to the target (same file system), is
flushed to disk and renamed over the target; on any error, or an interrupt, the
temporary file is removed, so no ``.part`` file is left behind.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

TEMP_SUFFIX = ".part"


@contextlib.contextmanager
def open_atomic(path, mode: str = "wb", encoding: str | None = None):
    """``with open_atomic(p) as f: f.write(...)``: p appears complete, or not at all."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent or ".")
    try:
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        try:   # mkstemp makes the file private (0600); a saved file gets the usual mode
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        except OSError:
            pass
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes(path, data: bytes) -> None:
    with open_atomic(path, "wb") as f:
        f.write(data)


def write_text(path, text: str, encoding: str = "utf-8") -> None:
    with open_atomic(path, "w", encoding=encoding) as f:
        f.write(text)
