"""``radmi.data.source``: what a ``--data`` path is (the layout registry) and the cache it resolves to."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pretrain_data import write_tiny_manifest

from radmi.data.source import LAYOUTS, Layout, manifest_table, open_source, register_layout, resolve_cache
from radmi.errors import CacheError, ManifestError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_manifest(tmp_path_factory) -> Path:
    return write_tiny_manifest(tmp_path_factory.mktemp("data"), n_train=4, n_validate=2, size=32)


@pytest.fixture(scope="module")
def prepared(tiny_manifest, tmp_path_factory) -> Path:
    """A cache prepared by the resolver from the manifest CSV, into a run folder."""
    run = tmp_path_factory.mktemp("run")
    cache = resolve_cache(tiny_manifest, run, image_size=32, max_length=16, workers=1)
    assert cache == run / "cache"
    return cache


def test_each_built_in_layout_is_recognised(tiny_manifest, prepared, tmp_path):
    assert list(LAYOUTS)[:4] == ["cache", "manifest", "manifest folder", "mimic-cxr folder"]
    assert open_source(prepared).layout.name == "cache" and open_source(prepared).is_cache
    assert open_source(tiny_manifest).layout.name == "manifest"
    assert open_source(tiny_manifest.parent).layout.name == "manifest folder"
    assert open_source(tmp_path).layout.name == "mimic-cxr folder"
    assert not open_source(tmp_path).is_cache


def test_missing_path_and_cache_manifest_are_clear_errors(prepared, tmp_path):
    with pytest.raises(ManifestError, match="no such data folder, manifest or cache") as info:
        open_source(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value)
    with pytest.raises(ManifestError, match="has no manifest table") as info:
        manifest_table(prepared)
    assert str(prepared) in str(info.value)


def test_manifest_table_of_a_file_and_of_its_folder_agree(tiny_manifest):
    by_file, by_folder = manifest_table(tiny_manifest), manifest_table(tiny_manifest.parent)
    assert len(by_file) == 6 and by_file.equals(by_folder)
    assert Path(by_file["image_path"].iloc[0]).is_absolute()


def test_resolve_cache_reuses_a_cache_and_a_manifest_as_they_are(tiny_manifest, prepared, tmp_path):
    from radmi.data.cache import is_cache

    assert is_cache(prepared)
    # a cache is returned as is; nothing is written into the run folder
    assert resolve_cache(prepared, tmp_path / "other", image_size=32) == prepared
    assert not (tmp_path / "other").exists()
    # a manifest CSV is handed to prepare_cache itself (no copy in the run folder)
    assert open_source(tiny_manifest).manifest_file(tmp_path) == tiny_manifest
    assert not (tmp_path / "manifest.csv").exists()
    # a cache of another size than the recipe's is refused, not read at the wrong size
    with pytest.raises(CacheError, match="the cache holds 32 px images but the recipe's image_size is 64"):
        resolve_cache(prepared, tmp_path / "other", image_size=64)


def test_classification_dataset_reads_a_resolved_cache(prepared):
    from radmi.data.cache import CachedDataset
    from radmi.engines.classify import classification_dataset

    dataset = classification_dataset(prepared, "train", image_size=32)
    assert isinstance(dataset, CachedDataset) and len(dataset) == 4


def test_deprecated_engine_alias_still_resolves(prepared, tmp_path):
    from radmi.engines.pretrain import resolve_cache as old_resolve_cache

    with pytest.warns(DeprecationWarning, match="radmi.data.source.resolve_cache"):
        assert old_resolve_cache(prepared, tmp_path, image_size=32) == prepared


def test_a_new_layout_is_one_builder_and_one_registry_entry(tiny_manifest, tmp_path):
    """A layout registered before the catch-all folder layout wins; its built table is written to the run."""
    marker = "layout.marker"

    def build(path: Path):
        return manifest_table(tiny_manifest).head(2)

    layout = Layout("marked folder", lambda p: (p / marker).is_file(), build=build, description="test")
    register_layout(layout, before="mimic-cxr folder")
    try:
        assert list(LAYOUTS).index("marked folder") == list(LAYOUTS).index("mimic-cxr folder") - 1
        folder = tmp_path / "export"
        folder.mkdir()
        (folder / marker).write_text("")
        source = open_source(folder)
        assert source.layout is layout and len(source.manifest_table()) == 2
        written = source.manifest_file(tmp_path / "run")
        assert written == tmp_path / "run" / "manifest.csv" and len(manifest_table(written)) == 2
        with pytest.raises(ValueError, match="already registered"):
            register_layout(layout)
    finally:
        LAYOUTS.pop("marked folder", None)
    with pytest.raises(ValueError, match="no data layout"):
        register_layout(Layout("x", bool), before="no such layout")


def test_no_module_decides_the_data_layout_by_itself():
    """Only the resolver and the cache itself test for ``cache.json``; nobody else reads the literal."""
    allowed = {"radmi/data/cache_store.py", "radmi/data/cache.py", "radmi/data/source.py"}
    offenders = []
    for path in sorted((ROOT / "radmi").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value == "cache.json":
                offenders.append(f"{relative}:{node.lineno}")
    assert not offenders, offenders
