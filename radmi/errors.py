"""radmi's exceptions. Each one names the file and/or manifest row it is about, and the reason."""

from __future__ import annotations

from os import PathLike


class RadmiError(Exception):
    """Base class: ``str(err)`` reads ``"<path> (row <row>): <reason>"``.

    Args:
        reason: what is wrong, in words a user can act on.
        path: the file the problem is in, if any.
        row: the 0-based manifest row, if any.
    """

    def __init__(self, reason: str, *, path: str | PathLike | None = None, row: int | None = None) -> None:
        self.reason = reason
        self.path = None if path is None else str(path)
        self.row = row
        where = []
        if self.path is not None:
            where.append(self.path)
        if row is not None:
            where.append(f"(row {row})")
        prefix = " ".join(where)
        super().__init__(f"{prefix}: {reason}" if prefix else reason)

    def __reduce__(self):  # keep path/row through DataLoader worker pickling
        return (_rebuild, (type(self), self.reason, self.path, self.row))


def radmi_cause(err: BaseException | None) -> RadmiError | None:
    """The first radmi error in ``err``'s chain of causes, if any (MONAI wraps transform errors in RuntimeError)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, RadmiError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _rebuild(cls: type[RadmiError], reason: str, path: str | None, row: int | None) -> RadmiError:
    return cls(reason, path=path, row=row)


class DicomError(RadmiError):
    """A DICOM file cannot be turned into a radiograph tensor (not DICOM, truncated, no pixels, ...)."""


class MissingCodecError(DicomError):
    """The transfer syntax needs a decoder plug-in that is not installed; the message names the package."""


class ImageError(RadmiError):
    """A PNG/JPG image cannot be read as a single-channel radiograph."""


class ReportError(RadmiError):
    """A report file is missing, empty or unreadable."""


class ManifestError(RadmiError):
    """A manifest or source CSV is missing columns or has invalid values."""


class CacheError(RadmiError):
    """A preprocessed cache is missing, incomplete or does not match its manifest/parameters."""


class ModelLoadError(RadmiError):
    """A pretrained model or checkpoint cannot be loaded."""


class TrainingError(RadmiError):
    """Training cannot go on (e.g. the loss became NaN/inf)."""


class BundleError(RadmiError):
    """A MONAI bundle is malformed, fails verification, or its hash does not match."""
