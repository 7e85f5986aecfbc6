"""What a ``--data`` value is, decided in one place: every command, engine and recipe asks this module.

A ``--data`` path is matched against a small registry of *layouts*, in order; the first that matches wins:

- ``cache``: a prepared cache folder (``radmi prepare``; has ``cache.json``);
- ``manifest``: a manifest CSV file (``radmi manifest``);
- ``manifest folder``: a folder holding its own ``manifest.csv`` / ``manifest.csv.gz``;
- ``mimic-cxr folder``: any other folder, read as a MIMIC-CXR-layout tree (the demo data or MIMIC-CXR itself).

>>> source = open_source("demo_data")            # DataSource(path, layout)
>>> table = source.manifest_table()               # manifest rows (not for a cache)
>>> cache = source.cache_dir("runs/pretrain")     # the cache, prepared into the run folder when needed

A new layout is one builder (folder -> manifest table) plus one :func:`register_layout` call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

from radmi.errors import CacheError, ManifestError

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

__all__ = [
    "LAYOUTS",
    "MANIFEST_FILE",
    "DataSource",
    "Layout",
    "manifest_table",
    "open_source",
    "register_layout",
    "require_reports",
    "resolve_cache",
]

#: Name of the manifest a source without one gets in a run folder, and the names a folder's own one may have.
MANIFEST_FILE = "manifest.csv"
FOLDER_MANIFESTS = ("manifest.csv", "manifest.csv.gz")


@dataclass(frozen=True)
class Layout:
    """One kind of ``--data``.

    Args:
        name: short name shown in messages and docs.
        detect: ``path -> bool``, whether a path is of this layout (cheap: file tests only).
        build: ``path -> manifest table`` (``radmi.data.manifest.MANIFEST_COLUMNS``); None for a cache, which
            is already what the engines read.
        manifest_file: ``path -> the manifest CSV the layout already has on disk``, handed to ``prepare_cache``
            as is; None when the table is built (it is then written to ``<run folder>/manifest.csv``).
        description: one line for docs and errors.
    """

    name: str
    detect: Callable[[Path], bool]
    build: Callable[[Path], pd.DataFrame] | None = None
    manifest_file: Callable[[Path], Path] | None = None
    description: str = ""


#: The registry, in matching order (first match wins).
LAYOUTS: dict[str, Layout] = {}


def register_layout(layout: Layout, before: str | None = None) -> Layout:
    """Add ``layout`` to :data:`LAYOUTS`, last or just before the layout named ``before``; returns it.

    A layout whose ``detect`` is more specific than an existing one must go ``before`` it (everything that is a
    folder matches ``"mimic-cxr folder"``).
    """
    if layout.name in LAYOUTS:
        raise ValueError(f"data layout {layout.name!r} is already registered")
    if before is None:
        LAYOUTS[layout.name] = layout
        return layout
    if before not in LAYOUTS:
        raise ValueError(f"no data layout {before!r} to insert {layout.name!r} before")
    items = list(LAYOUTS.items())
    index = [name for name, _ in items].index(before)
    items.insert(index, (layout.name, layout))
    LAYOUTS.clear()
    LAYOUTS.update(items)
    return layout


# ---- the built-in layouts ----------------------------------------------------------------------------------
def _is_cache(path: Path) -> bool:
    from radmi.data.cache import is_cache

    return path.is_dir() and is_cache(path)


def _folder_manifest(path: Path) -> Path | None:
    return next((path / name for name in FOLDER_MANIFESTS if (path / name).is_file()), None)


def _read_manifest(path: Path) -> pd.DataFrame:
    from radmi.data.manifest_schema import read_manifest_within_roots

    return read_manifest_within_roots(path)


def _build_mimic(path: Path) -> pd.DataFrame:
    from radmi.data.manifest import build_mimic_manifest
    from radmi.data.manifest_schema import require_inside_roots

    table = build_mimic_manifest(path)  # a record list naming ../../x would leave the tree
    roots = [Path(root) for root in table.attrs.get("dataset_roots", [path])]
    require_inside_roots(table, roots, path=path, origin="the MIMIC-CXR layout's images and reports")
    return table


register_layout(Layout("cache", _is_cache, description="a prepared cache folder (has cache.json)"))
register_layout(
    Layout(
        "manifest",
        Path.is_file,
        build=_read_manifest,
        manifest_file=lambda path: path,
        description="a manifest CSV",
    )
)
register_layout(
    Layout(
        "manifest folder",
        lambda path: path.is_dir() and _folder_manifest(path) is not None,
        build=lambda path: _read_manifest(_folder_manifest(path)),
        manifest_file=_folder_manifest,
        description="a folder with its own manifest.csv",
    )
)
register_layout(
    Layout(
        "mimic-cxr folder",
        Path.is_dir,
        build=_build_mimic,
        description="a MIMIC-CXR-layout folder (demo data or MIMIC-CXR)",
    )
)


# ---- resolving ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataSource:
    """A ``--data`` path and the layout it was recognised as (see :func:`open_source`)."""

    path: Path
    layout: Layout

    @property
    def is_cache(self) -> bool:
        """Whether the source is a prepared cache (engines read it directly)."""
        return self.layout.build is None

    def manifest_table(self) -> pd.DataFrame:
        """The manifest rows of the source (paths absolute).

        Raises:
            ManifestError: the source is a cache, which has no manifest table.
        """
        if self.layout.build is None:
            raise ManifestError(
                f"a {self.layout.name} has no manifest table; pass the cache itself as --data", path=self.path
            )
        return self.layout.build(self.path)

    def manifest_file(self, output_dir: str | PathLike) -> Path:
        """A manifest CSV on disk: the source's own, or the built table written to ``output_dir/manifest.csv``
        (reused when already there)."""
        if self.layout.manifest_file is not None:
            return self.layout.manifest_file(self.path)
        from radmi.data.manifest import write_manifest

        out = Path(output_dir) / MANIFEST_FILE
        if not out.is_file():
            write_manifest(self.manifest_table(), out, relative=False)
        return out

    def cache_dir(
        self,
        output_dir: str | PathLike,
        image_size: int = 256,
        tokenizer: str | None = None,
        max_length: int = 128,
        workers: int = 2,
    ) -> Path:
        """The prepared cache to read: the source itself, or one prepared into ``output_dir/cache``.

        A cache already in ``output_dir/cache`` is re-used when it matches the manifest and parameters
        (``prepare_cache`` checks). With several processes only rank 0 prepares; the others wait at a barrier.

        Raises:
            CacheError: the cache is still incomplete after preparing it (or does not match).
        """
        if self.is_cache:
            check_cache_image_size(self.path, image_size)
            return self.path
        import ignite.distributed as idist

        output_dir = Path(output_dir)
        cache_dir = output_dir / "cache"
        if idist.get_rank() == 0:
            from radmi.data.cache import prepare_cache

            output_dir.mkdir(parents=True, exist_ok=True)
            manifest = self.manifest_file(output_dir)
            logger.info("preparing the cache of %s (%s) in %s", self.path, self.layout.name, cache_dir)
            options = {} if tokenizer is None else {"tokenizer": tokenizer}  # None: prepare_cache's default
            # a MIMIC-CXR folder: every row inside it; a manifest (or a folder's own manifest.csv): its roots file
            root = self.path if self.layout.manifest_file is None else None
            summary = prepare_cache(
                manifest, cache_dir, size=image_size, max_length=max_length, workers=workers, root=root, **options
            )
            if not summary.complete:
                raise CacheError("the cache is incomplete after preparing it", path=cache_dir)
        idist.barrier()
        return cache_dir


def cache_image_size(cache_dir: str | PathLike) -> int:
    """S, the side of the square images a prepared cache holds (``radmi prepare --size``)."""
    from radmi.data.cache_store import load_cache_info

    return int(load_cache_info(cache_dir)["params"]["size"])


def check_cache_image_size(cache_dir: str | PathLike, image_size: int) -> None:
    """Raise a :class:`CacheError` when a prepared cache holds images of another size than the recipe's.

    A model scored or trained at a size other than its recipe's gives different results without any error
    (a probe evaluated on a 128 px cache instead of its 256 px one lost 0.05 macro AUROC).
    """
    size = cache_image_size(cache_dir)
    if size != int(image_size):
        raise CacheError(
            f"the cache holds {size} px images but the recipe's image_size is {int(image_size)}: prepare a cache "
            f"with radmi prepare --size {int(image_size)}, pass the manifest instead, or train at "
            f"--set image_size={size}",
            path=cache_dir,
        )


def open_source(data: str | PathLike) -> DataSource:
    """Recognise ``data`` (``~`` expanded) as one of :data:`LAYOUTS`.

    Raises:
        ManifestError: the path does not exist, or no layout matches it.
    """
    path = Path(data).expanduser()
    if not path.exists():
        raise ManifestError("no such data folder, manifest or cache", path=path)
    for layout in LAYOUTS.values():
        if layout.detect(path):
            return DataSource(path, layout)
    known = "; ".join(f"{layout.name}: {layout.description}" for layout in LAYOUTS.values())
    raise ManifestError(f"not a known data layout ({known})", path=path)


def manifest_table(data: str | PathLike) -> pd.DataFrame:
    """The manifest rows of ``data`` (a manifest CSV or a folder); a cache raises ``ManifestError``."""
    return open_source(data).manifest_table()


def _images_without_report(source: DataSource) -> tuple[int, int] | None:
    """(images without a report, images) of a cache (from ``cache.json``) or a manifest file (its
    ``report_path`` column only); None when unknown without building the table (a built layout) or when the
    cache predates the count."""
    if source.is_cache:
        from radmi.data.cache import load_cache_info

        counts = load_cache_info(source.path)["counts"]
        if "with_report" not in counts:
            return None
        return counts["kept"] - counts["with_report"], counts["kept"]
    if source.layout.manifest_file is None:
        return None
    import pandas as pd

    try:
        paths = pd.read_csv(
            source.layout.manifest_file(source.path),
            usecols=["report_path"],
            dtype=str,
            keep_default_na=False,
        )["report_path"]
    except (ValueError, OSError, pd.errors.ParserError):
        return None  # not a readable manifest: read_manifest says why when the data is read
    return int((paths.str.strip() == "").sum()), len(paths)


def require_reports(data: str | PathLike | DataSource) -> None:
    """Raise unless every image of ``data`` has a report: pretraining learns from image-report pairs.

    A manifest row with an empty ``report_path`` (a CheXpert manifest, which has no reports) is an image
    without one. A cache is judged by the count in its ``cache.json``, a manifest by its ``report_path`` column
    (no file is opened); a folder layout that builds its table is checked once its cache is prepared.

    Raises:
        ManifestError / CacheError: naming the manifest or cache, with the counts (one line).
    """
    source = data if isinstance(data, DataSource) else open_source(data)
    counts = _images_without_report(source)
    if counts is None or counts[0] == 0:
        return
    missing, total = counts
    error = CacheError if source.is_cache else ManifestError
    path = source.path if source.layout.manifest_file is None else source.layout.manifest_file(source.path)
    raise error(
        f"{missing} of {total} images have no report (empty report_path); pretraining needs an image-report "
        "pair for every image: use data without reports (e.g. CheXpert) with finetune/evaluate",
        path=path,
    )


def resolve_cache(
    dataset_dir: str | PathLike,
    output_dir: str | PathLike,
    image_size: int = 256,
    tokenizer: str | None = None,
    max_length: int = 128,
    workers: int = 2,
    reports_required: bool = True,
) -> Path:
    """The prepared cache to train from, preparing it into ``output_dir/cache`` when ``dataset_dir`` is not one.

    What the pretraining recipe's ``cache_dir`` calls: ``open_source(dataset_dir).cache_dir(...)``.
    ``image_size``, ``tokenizer`` (None: the offline default), ``max_length`` and ``workers`` are
    ``prepare_cache`` parameters. With ``reports_required`` (pretraining) data with images without a report is
    refused (:func:`require_reports`), a manifest before its cache is prepared; pass False to prepare a cache
    for classification only.
    """
    source = open_source(dataset_dir)
    if reports_required:
        # before preparing: a CheXpert manifest is refused at once, not after decoding its images
        require_reports(source)
    cache_dir = source.cache_dir(
        output_dir, image_size=image_size, tokenizer=tokenizer, max_length=max_length, workers=workers
    )
    if reports_required and not source.is_cache:
        require_reports(cache_dir)  # a built layout: what its cache counted
    return cache_dir
