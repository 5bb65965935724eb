"""Opening (possibly compressed) files for reading and writing them atomically."""

import bz2
import contextlib
import gzip
import io
import lzma
import os
import shutil
import stat
import tempfile
import zlib
from pathlib import Path

from deepmd_charge.errors import InputError

# magic bytes -> (name, decompress)
_MAGIC = {
    b"\x1f\x8b": ("gzip", gzip.decompress),
    b"BZh": ("bzip2", bz2.decompress),
    b"\xfd7zXZ\x00": ("xz", lzma.decompress),
}
#: file name ending (any case) -> a compressing binary stream over the raw output file (for writing)
COMPRESSORS = {
    ".gz": lambda raw: gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6),
    ".bz2": lambda raw: bz2.BZ2File(raw, "wb"),
    ".xz": lambda raw: lzma.LZMAFile(raw, "wb"),
}


def compressor_for(path):
    """The COMPRESSORS entry for `path`'s name (.gz, .GZ, .bz2, .xz ...), or None for plain text."""
    name = str(path).lower()
    return next((opener for ext, opener in COMPRESSORS.items() if name.endswith(ext)), None)


def printable(text, limit: int = 40) -> str:
    """`text` (a token or a line from a file) fit for a one-line message: stripped, control
    characters escaped, at most `limit` characters."""
    text = str(text).strip()
    short = text[:limit]
    out = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in short)
    return out + ("..." if len(text) > limit else "")


def read_text(path) -> str:
    """Whole text of a plain, .gz, .bz2 or .xz file (detected by content, not name).

    Every problem (missing, a folder, unreadable, broken compression, empty, binary) is an
    InputError naming the file.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(path, "is a directory, expected a file")
    if not path.exists():
        raise InputError(path, "no such file")
    mode = path.stat().st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
        raise InputError(path, "is not a regular file")
    try:
        with open(path, "rb") as fh:  # read once: also works for pipes such as <(zcat ...)
            raw = fh.read()
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror or exc})") from None
    for magic, (kind, decompress) in _MAGIC.items():
        if raw.startswith(magic):
            try:
                raw = decompress(raw)
            except (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error) as exc:
                raise InputError(
                    path, f"cannot be read: broken {kind} data ({printable(exc, 80)}); is the file complete?"
                ) from None
            break
    if not raw.strip():
        raise InputError(path, "is empty")
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise InputError(path, f"is not a text file (NUL byte at byte {nul + 1}): a binary or UTF-16 file?")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def check_writable(path) -> Path:
    """Raise InputError unless a file can be created at `path` (call it before long work)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise InputError(path, "is a directory, expected an output file name")
    if not parent.exists():
        raise InputError(path, f"cannot write: folder {parent} does not exist")
    if not parent.is_dir():
        raise InputError(path, f"cannot write: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise InputError(path, f"cannot write: folder {parent} is not writable")
    return parent


@contextlib.contextmanager
def atomic_write(path, mode: str = "w"):
    """Write to a temporary file next to `path` and rename it into place only on success.

    A crash or a user error half-way leaves no partial output behind; a write that the system
    refuses (permissions, read-only or full disk) is an InputError naming `path`.
    """
    path = Path(path)
    parent = check_writable(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise InputError(path, f"cannot write ({exc.strerror or exc})") from None
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise InputError(path, f"cannot write ({exc.strerror or exc})") from None
        raise


@contextlib.contextmanager
def atomic_folder(path):
    """Yield a temporary folder beside `path`; on success it replaces `path` (a folder the caller
    has checked may go), on any failure it is removed. Refused writes are an InputError naming `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as exc:
        raise InputError(path, f"cannot write ({exc.strerror or exc})") from None
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise InputError(path, f"cannot write ({exc.strerror or exc})") from None
        raise


@contextlib.contextmanager
def atomic_text(path):
    """atomic_write for UTF-8 text, compressed on the fly when the name ends in .gz, .bz2 or .xz
    (any case): the file appears only when complete."""
    opener = compressor_for(path)
    with atomic_write(path, "wb" if opener else "w") as raw:
        if opener is None:
            yield raw
            return
        fh = io.TextIOWrapper(opener(raw), encoding="utf-8")
        try:
            yield fh
        except BaseException:
            with contextlib.suppress(Exception):
                fh.close()  # the temporary file is removed anyway
            raise
        fh.close()  # flushes the compressed stream into `raw`; atomic_write then renames it


def write_text(path, text: str) -> None:
    """Write `text` atomically; a name ending in .gz, .bz2 or .xz (any case) is compressed accordingly."""
    with atomic_text(path) as fh:
        fh.write(text)
