"""Reading an .npz safely: no pickles, no deflate bomb, no traceback.

The archive's headers are checked before anything is decompressed (total size
against a limit), each member is read whole (so its CRC is checked) and its npy
header must describe exactly the bytes stored; any damage is one line, raised as
the caller's error class.
"""
from __future__ import annotations

import io
import zipfile
import zlib
from pathlib import Path

import numpy as np

from . import limits


class NpzError(ValueError):
    """A file that is not a sound .npz of plain arrays."""


def read(path, error=NpzError, max_file_bytes: int = limits.MAX_DATA_FILE_BYTES,
         max_array_bytes: int = limits.MAX_RECORD_ARRAY_BYTES, what: str = "an .npz data file") -> dict:
    """The arrays of an .npz as a dict; ``error`` (one line) for anything else."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror or e})") from None
    if size > max_file_bytes:
        raise error(f"{path}: {what} must be at most {limits.gib(max_file_bytes)}, "
                    f"this file is {limits.gib(size)}")
    try:
        with zipfile.ZipFile(path) as zf:
            return _read_members(zf, path, error, max_array_bytes)
    except error:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, zlib.error,
            NotImplementedError, RuntimeError, MemoryError, KeyError, UnicodeError) as e:
        raise error(f"{path}: not {what} (damaged or not an .npz archive: {why(e)})") from None


def why(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text[:120]}" if text else type(e).__name__


def _read_members(zf: zipfile.ZipFile, path: Path, error, max_bytes: int) -> dict:
    infos = zf.infolist()
    if len(infos) > 1000:
        raise error(f"{path}: not an .npz of arrays ({len(infos)} members)")
    total = sum(i.file_size for i in infos)
    if total > max_bytes:
        raise error(f"{path}: its arrays would take {limits.gib(total)} decompressed, more than the "
                    f"limit of {limits.gib(max_bytes)}")
    out = {}
    for info in infos:
        if not info.filename.endswith(".npy"):
            continue
        key = info.filename[:-4]
        data = zf.read(info)   # at most file_size bytes (capped above); checks the CRC
        fh = io.BytesIO(data)
        try:
            version = np.lib.format.read_magic(fh)
            header = _HEADERS.get(version)
            if header is None:
                raise ValueError(f"npy format version {version}")
            shape, fortran, dtype = header(fh)
            if dtype.hasobject:
                raise error(f"{path}: array {key!r} holds Python objects; data and records never do")
            need = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
            if need != len(data) - fh.tell():   # the header must describe exactly the bytes stored
                raise ValueError(f"header says {dtype} {shape}, {len(data) - fh.tell()} bytes stored")
            fh.seek(0)
            out[key] = np.lib.format.read_array(fh, allow_pickle=False)
        except error:
            raise
        except (ValueError, SyntaxError, TypeError, EOFError, OSError, IndexError, KeyError,
                MemoryError, OverflowError) as e:
            raise error(f"{path}: array {key!r} is damaged ({why(e)})") from None
    return out


_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
