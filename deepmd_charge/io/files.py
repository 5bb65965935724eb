"""Opening (possibly compressed) files for reading and writing them atomically."""

import bz2
import contextlib
import gzip
import lzma
import os
import tempfile
from pathlib import Path

from deepmd_charge.errors import InputError

_MAGIC = {b"\x1f\x8b": gzip.open, b"BZh": bz2.open, b"\xfd7zXZ\x00": lzma.open}


def read_text(path) -> str:
    """Whole text of a plain, .gz, .bz2 or .xz file (detected by content, not name)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(path, "is a directory, expected a file")
    if not path.exists():
        raise InputError(path, "no such file")
    with open(path, "rb") as fh:
        head = fh.read(6)
    opener = next((op for magic, op in _MAGIC.items() if head.startswith(magic)), open)
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise InputError(path, f"cannot be read ({exc}); is the file complete?") from None
    if not raw.strip():
        raise InputError(path, "is empty")
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


@contextlib.contextmanager
def atomic_write(path, mode: str = "w"):
    """Write to a temporary file next to `path` and rename it into place only on success.

    A crash or a user error half-way leaves no partial output behind.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise InputError(path, "is a directory, expected an output file name")
    if not parent.is_dir():
        raise InputError(path, f"cannot write: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(path, f"cannot write: folder {parent} is not writable")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
