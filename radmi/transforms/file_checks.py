"""Opening input files safely: never block on a FIFO, name links that go nowhere, stream ``.gz`` with a limit.

Standard library only (no torch, MONAI, pydicom or Pillow), so the manifest builders, the checker and the DICOM
header reader can all use it without import cost.

- :func:`file_problem` says, from ``lstat``/``stat`` alone, why a path is not a readable regular file (missing,
  dangling link, link loop, FIFO, socket, device, folder), or ``None``. It never opens the path.
- :func:`open_regular_file` opens a path for reading with ``O_NONBLOCK`` (so a FIFO cannot block the open),
  then checks with ``fstat`` on the open descriptor that it is a regular file (no race between check and open),
  and only then hands back an ordinary blocking binary file object.
- :func:`read_gzip_limited` decompresses a gzip stream in chunks and stops with an error as soon as the output
  passes a limit, so a small "gzip bomb" cannot take gigabytes.
- :func:`check_inflated_size` inflates a raw deflate stream in bounded chunks only to count its size, and stops
  with an error past a limit (a Deflated DICOM dataset is checked with it before pydicom inflates it whole).

A symbolic link to a regular file is followed (datasets are often assembled from links); a link loop or a
dangling link is an error with that reason.
"""

from __future__ import annotations

import errno
import gzip
import os
import stat
import zlib
from os import PathLike
from typing import BinaryIO

from radmi.errors import RadmiError

__all__ = [
    "DEFAULT_MAX_GZIP_BYTES",
    "check_inflated_size",
    "file_problem",
    "open_regular_file",
    "read_gzip_limited",
]

#: Default cap on the decompressed size of one ``.gz`` input (bytes).
DEFAULT_MAX_GZIP_BYTES = 512 * 2**20
_CHUNK = 2**20
#: compressed bytes fed to the inflater at a time by :func:`check_inflated_size`
_INFLATE_INPUT_CHUNK = 64 * 2**10


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def file_problem(path: str | PathLike, missing: str = "file not found") -> str | None:
    """Why ``path`` is not a readable regular file, from ``stat`` alone (never opens it); ``None`` when it is.

    Reasons: ``missing`` (nothing there), ``dangling symbolic link ...``, ``symbolic link loop``,
    ``not a regular file: a FIFO (named pipe)`` (or socket, device, folder), ``cannot stat ...``.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return f"dangling symbolic link (its target {os.readlink(path)!r} does not exist)"
        return missing
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symbolic link loop (the link resolves to itself)"
        return f"cannot stat the file: {err.strerror or err}"
    except ValueError as err:  # embedded NUL byte in the path
        return f"invalid path: {err}"
    if not stat.S_ISREG(info.st_mode):
        return f"not a regular file: {_kind(info.st_mode)}"
    return None


def open_regular_file(
    path: str | PathLike, error: type[RadmiError] = RadmiError, missing: str = "file not found"
) -> BinaryIO:
    """Open ``path`` for binary reading, refusing anything but a regular file, without ever blocking.

    The open uses ``O_NONBLOCK`` (opening a FIFO for reading would otherwise wait for a writer forever), the
    file type is checked with ``fstat`` on the opened descriptor, and the returned file object is blocking.

    Raises:
        error: (a radmi error class) naming the path: missing, dangling link, link loop, special file, or an
            OS error with its reason.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except (OSError, ValueError) as err:
        reason = (
            file_problem(path, missing) or f"cannot open the file: {getattr(err, 'strerror', None) or err}"
        )
        raise error(reason, path=path) from err
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"not a regular file: {_kind(mode)}", path=path)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_gzip_limited(
    file: BinaryIO, path: str | PathLike, max_bytes: int, error: type[RadmiError] = RadmiError
) -> bytes:
    """Decompress the gzip stream ``file`` in 1 MiB chunks; stop with ``error`` once it passes ``max_bytes``.

    Peak memory is about ``max_bytes`` plus one chunk, whatever the compression ratio.

    Raises:
        error: naming the path, when the output would exceed ``max_bytes`` or the stream is corrupt/truncated.
    """
    chunks: list[bytes] = []
    total = 0
    try:
        with gzip.GzipFile(fileobj=file) as stream:
            while True:
                chunk = stream.read(_CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > max_bytes:
                    raise error(
                        f"gzip file decompresses to more than {max_bytes:,} bytes (the limit); refusing to "
                        "decompress further (raise the limit if the file is genuine)",
                        path=path,
                    )
                chunks.append(chunk)
    except (EOFError, OSError, zlib.error) as err:
        raise error(f"truncated or corrupt gzip file: {err}", path=path) from err
    return b"".join(chunks)


def check_inflated_size(
    file: BinaryIO,
    path: str | PathLike,
    max_bytes: int,
    error: type[RadmiError] = RadmiError,
    what: str = "deflate stream",
) -> int:
    """Inflate the raw deflate stream (RFC 1951, no zlib/gzip header) read from ``file`` only to count its size.

    Input is read 64 KiB at a time and output taken 1 MiB at a time and dropped, so memory stays at about one
    chunk of each whatever the compression ratio. Stops with ``error`` as soon as the inflated size, or the
    compressed size read, passes ``max_bytes``. A stream that ends early is not an error here (the reader that
    parses the data reports it); ``file`` is left up to one input chunk past where the stream ended (callers
    seek back).

    Returns:
        the inflated size in bytes (at most ``max_bytes``).

    Raises:
        error: naming the path, when the stream inflates past ``max_bytes`` or is corrupt.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    inflated = consumed = 0
    while not inflater.eof:
        data = inflater.unconsumed_tail
        if not data:
            data = file.read(_INFLATE_INPUT_CHUNK)
            consumed += len(data)
        try:
            out = inflater.decompress(data, _CHUNK)
        except zlib.error as err:
            raise error(f"corrupt {what}: {err}", path=path) from err
        inflated += len(out)
        if inflated > max_bytes or consumed > max_bytes:
            size = "inflates to" if inflated > max_bytes else "takes, compressed,"
            raise error(
                f"{what} {size} more than {max_bytes:,} bytes (the limit, max_gzip_bytes); refusing to "
                "inflate further (raise the limit if the file is genuine)",
                path=path,
            )
        if not data and not out:
            break  # input exhausted: a truncated stream, reported by whoever parses it
    return inflated
