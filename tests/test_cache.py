"""radmi prepare / CachedDataset: equality to the direct pipeline, bad rows, resume, shards, refusal."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from dicom_factory import known_pixels, write_dicom, xray_dataset
from torch.utils.data import DataLoader

import radmi.data.cache as cache_module
from radmi.cli import main as radmi_main
from radmi.data.cache import (
    CachedDataset,
    check_cache,
    collate_cached,
    finalize_cache,
    is_cache,
    prepare_cache,
)
from radmi.data.labels import CHEXPERT_LABELS
from radmi.data.manifest import MANIFEST_COLUMNS, read_manifest, write_manifest
from radmi.data.pipeline import sample_transform
from radmi.errors import CacheError, DicomError

SIZE = 32
MAX_LENGTH = 24
ROWS = 10
BAD_IMAGE_ROW, BAD_REPORT_ROW = 3, 7
SECRET_WORD = "zygomaticofacial"  # appears in every report; must never reach the cache

REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___ year old with cough.

 FINDINGS:

 The heart size is normal.  There is a small left pleural effusion number {i}.
 A {word} line is seen.

 IMPRESSION:

 Small left pleural effusion.
"""


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """10 rows: DICOMs of mixed shapes, bit depths and photometrics; row 3 is not DICOM, row 7 has no report."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(ROWS):
        shape = [(48, 40), (40, 56), (33, 33)][i % 3]
        bits = [12, 15, 16][i % 3]
        ds = xray_dataset(
            known_pixels(*shape, bits_stored=bits, seed=i),
            bits_stored=bits,
            photometric="MONOCHROME1" if i % 2 else "MONOCHROME2",
        )
        image = root / f"img{i}.dcm"
        write_dicom(image, ds)
        if i == BAD_IMAGE_ROW:
            image.write_bytes(b"this is not a DICOM file" * 10)
        report = root / f"s{i}.txt"
        if i != BAD_REPORT_ROW:
            report.write_text(REPORT.format(i=i, word=SECRET_WORD))
        labels = rng.choice([1.0, 0.0, -1.0, np.nan], size=len(CHEXPERT_LABELS))
        rows.append(
            {
                "subject_id": f"{10000000 + i // 2}",
                "study_id": f"{50000000 + i}",
                "dicom_id": f"{i:08x}-0000aaaa-bbbbcccc-ddddeeee-ffff0000",
                "image_path": str(image),
                "report_path": str(report),
                "view": "PA" if i % 4 else "",
                "split": ["train", "train", "validate", "test", "train"][i % 5],
                **dict(zip(CHEXPERT_LABELS, labels, strict=True)),
                "edema_severity": [0, np.nan, 2, 3, np.nan][i % 5],
            }
        )
    return write_manifest(pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS)), root / "manifest.csv")


@pytest.fixture(scope="module")
def direct(manifest) -> dict[int, dict]:
    """The direct pipeline's sample for every good row (the reference the cache must reproduce)."""
    transform = sample_transform(image_size=SIZE, max_length=MAX_LENGTH)
    records = read_manifest(manifest).to_dict("records")
    return {i: transform(r) for i, r in enumerate(records) if i not in (BAD_IMAGE_ROW, BAD_REPORT_ROW)}


def _prepare(manifest, out, **kwargs):
    kwargs = {
        "size": SIZE,
        "max_length": MAX_LENGTH,
        "workers": 1,
        "chunk_size": 3,
        "progress": False,
    } | kwargs
    return prepare_cache(manifest, out, **kwargs)


@pytest.fixture(scope="module")
def cache_u8(manifest, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("caches") / "u8"
    summary = _prepare(manifest, out)
    assert summary.complete and summary.processed == ROWS
    return out


def _all_samples(cache_dir: Path) -> list[dict]:
    dataset = CachedDataset(cache_dir)
    return dataset.__getitems__(list(range(len(dataset))))


def _assert_same_samples(left: list[dict], right: list[dict]) -> None:
    assert len(left) == len(right)
    for a, b in zip(left, right, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], torch.Tensor):
                assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
            else:
                assert a[key] == b[key], key


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_cached_samples_equal_the_direct_pipeline(manifest, direct, cache_u8, tmp_path, dtype):
    cache_dir = cache_u8 if dtype == "uint8" else tmp_path / "u16"
    if dtype == "uint16":
        _prepare(manifest, cache_dir, dtype=dtype)
    dataset = CachedDataset(cache_dir)
    assert len(dataset) == ROWS - 2
    assert list(dataset.index["row"]) == sorted(direct)
    levels = 255 if dtype == "uint8" else 65535
    for position, row in enumerate(dataset.index["row"]):
        cached, expected = dataset[position], direct[row]
        assert cached["image"].shape == (1, SIZE, SIZE) and cached["image"].dtype == torch.float32
        error = (cached["image"] - expected["image"].as_tensor()).abs().max().item()
        # rounding to the nearest level: at most half a level, plus float32 rounding of the division
        assert error <= 0.5 / levels + 1e-7
        # and the stored level is exactly the rounded one
        stored = torch.round(cached["image"] * levels)
        assert torch.equal(stored, torch.round(expected["image"].as_tensor().clamp(0, 1) * levels))
        for key in ("input_ids", "attention_mask", "sentence_ids", "labels", "label_mask", "edema_severity"):
            assert cached[key].dtype == expected[key].dtype, key
            assert torch.equal(cached[key], expected[key]), key
        assert cached["study_id"].item() == expected["study_id"].item()
        assert cached["subject_id"].item() == expected["subject_id"].item()
        assert cached["dicom_id"] == expected["dicom_id"]


def test_bad_rows_listed_and_counted_exactly(manifest, cache_u8):
    info = json.loads((cache_u8 / "cache.json").read_text())
    assert (
        info["counts"]["rows"] == ROWS and info["counts"]["kept"] == ROWS - 2 and info["counts"]["bad"] == 2
    )
    assert info["counts"]["kept_by_split"] == {"test": 1, "train": 6, "validate": 1}
    bad = {item["row"]: item for item in info["bad_rows"]}
    assert sorted(bad) == [BAD_IMAGE_ROW, BAD_REPORT_ROW]
    assert Path(bad[BAD_IMAGE_ROW]["file"]).name == f"img{BAD_IMAGE_ROW}.dcm"
    assert Path(bad[BAD_REPORT_ROW]["file"]).name == f"s{BAD_REPORT_ROW}.txt"
    assert "not found" in bad[BAD_REPORT_ROW]["reason"]
    assert info["manifest"]["sha256"] == cache_module.file_sha256(manifest)
    assert info["params"]["size"] == SIZE and info["tokenizer"] == "offline:all-MiniLM-L6-v2"


def test_no_report_text_in_the_cache(cache_u8):
    for path in cache_u8.rglob("*"):
        if path.is_file():
            assert SECRET_WORD.encode() not in path.read_bytes(), path


def test_cache_files_share_one_mode(cache_u8):
    """The atomic JSON files (made with mkstemp, 0600 by default) get the same mode as the arrays."""
    modes = {path.name: path.stat().st_mode & 0o777 for path in cache_u8.rglob("*") if path.is_file()}
    assert modes["cache.json"] == modes["index.csv"] == modes["images.npy"], modes
    assert len(set(modes.values())) == 1, modes


def test_split_filter_and_batched_loader(cache_u8):
    train = CachedDataset(cache_u8, split="train")
    assert len(train) == 6 and set(train.index["split"]) == {"train"}
    loader = DataLoader(train, batch_size=4, shuffle=False)
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 1, SIZE, SIZE)
    assert batch["input_ids"].shape == (4, MAX_LENGTH) and batch["input_ids"].dtype == torch.int64
    assert batch["study_id"].dtype == torch.int64 and batch["study_id"].shape == (4,)
    assert batch["dicom_id"] == list(train.index["dicom_id"][:4])
    singles = [train[i] for i in range(4)]  # __getitem__ and __getitems__ agree
    assert torch.equal(batch["image"], torch.stack([s["image"] for s in singles]))
    # the fast collate (no second stacking) gives the same batch
    fast = next(iter(DataLoader(train, batch_size=4, shuffle=False, collate_fn=collate_cached)))
    assert fast.keys() == batch.keys()
    for key, value in batch.items():
        assert torch.equal(fast[key], value) if isinstance(value, torch.Tensor) else fast[key] == value


def test_resume_after_interrupt_gives_the_same_cache(manifest, cache_u8, tmp_path, monkeypatch):
    out = tmp_path / "resumed"
    calls = []
    real = cache_module._process_chunk

    def interrupted(number, first_row, records, *args):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(len(records))
        return real(number, first_row, records, *args)

    monkeypatch.setattr(cache_module, "_process_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _prepare(manifest, out)
    assert not is_cache(out)
    progress = json.loads((out / "shards/00000-of-00001/progress.json").read_text())
    assert progress["done_chunks"] == [0, 1] and [b["row"] for b in progress["bad"]] == [BAD_IMAGE_ROW]
    with pytest.raises(CacheError, match="not a complete cache"):
        CachedDataset(out)

    # as if killed (SIGKILL) after committing chunk 0 while chunk 1 was half written: roll the progress back
    # and scribble over chunk 1's slots; the resumed run must redo chunk 1 and overwrite the garbage
    shard = out / "shards/00000-of-00001"
    (shard / "progress.json").write_text(json.dumps({"done_chunks": [0], "bad": []}))
    images = np.load(shard / "images.npy", mmap_mode="r+")
    images[3:5] = 77
    images.flush()
    del images

    monkeypatch.setattr(cache_module, "_process_chunk", real)
    summary = _prepare(manifest, out)
    assert summary.complete and summary.processed == ROWS - 3 and summary.bad == 2
    for name in (
        "images",
        "input_ids",
        "attention_mask",
        "sentence_ids",
        "labels",
        "label_mask",
        "edema_severity",
    ):
        one = np.load(cache_u8 / f"shards/00000-of-00001/{name}.npy")
        assert np.array_equal(np.load(out / f"shards/00000-of-00001/{name}.npy"), one), name
    assert (out / "index.csv").read_text() == (cache_u8 / "index.csv").read_text()
    # a finished cache is not redone
    assert _prepare(manifest, out).processed == 0


def test_two_shards_equal_one_run(manifest, cache_u8, tmp_path):
    out = tmp_path / "sharded"
    first = _prepare(manifest, out, shard="0/2")
    assert not first.complete and first.rows == 5 and first.bad == 1
    with pytest.raises(CacheError, match="not a complete cache"):
        CachedDataset(out)
    with pytest.raises(CacheError, match="1/2 not finished"):
        finalize_cache(out)
    with pytest.raises(CacheError, match="same n"):
        _prepare(manifest, out, shard="0/3")
    second = _prepare(manifest, out, shard="1/2")
    assert second.complete and second.rows == 5 and second.bad == 1
    one, two = (json.loads((d / "cache.json").read_text()) for d in (cache_u8, out))
    assert one["counts"] == two["counts"] and one["bad_rows"] == two["bad_rows"] and two["shards"] == 2
    _assert_same_samples(_all_samples(out), _all_samples(cache_u8))
    # finalize is repeatable (a cluster's last two jobs may both run it)
    assert finalize_cache(out, manifest)["counts"] == one["counts"]
    # a finished sharded cache is accepted as it is by a plain (unsharded) call
    again = _prepare(manifest, out)
    assert again.complete and again.processed == 0 and again.kept == ROWS - 2


def test_worker_pool_gives_the_same_cache(manifest, cache_u8, tmp_path):
    out = tmp_path / "pool"
    assert _prepare(manifest, out, workers=2).complete
    _assert_same_samples(_all_samples(out), _all_samples(cache_u8))


def test_mismatching_manifest_or_parameters_refused(manifest, cache_u8, tmp_path):
    changed = tmp_path / "manifest.csv"
    frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    frame.loc[0, "Edema"] = "1.0"
    for column in ("image_path", "report_path"):  # keep the files reachable from the new folder
        frame[column] = [str(manifest.parent / p) for p in frame[column]]
    frame.to_csv(changed, index=False)
    with pytest.raises(CacheError, match="different manifest"):
        _prepare(changed, cache_u8, root=manifest.parent)  # its rows lie in the first manifest's folder
    with pytest.raises(CacheError, match="size: cache has 32, asked 64"):
        _prepare(manifest, cache_u8, size=64)
    with pytest.raises(CacheError, match="different manifest"):
        check_cache(cache_u8, changed)
    assert check_cache(cache_u8, manifest, size=SIZE, max_length=MAX_LENGTH)["counts"]["kept"] == ROWS - 2
    # an unfinished shard folder is checked as well
    partial = tmp_path / "partial"
    _prepare(manifest, partial, shard="0/2")
    with pytest.raises(CacheError, match="dtype"):
        _prepare(manifest, partial, shard="1/2", dtype="uint16")


def test_on_error_raise_names_the_row(manifest, tmp_path):
    with pytest.raises(DicomError) as caught:
        _prepare(manifest, tmp_path / "strict", on_error="raise")
    assert caught.value.row == BAD_IMAGE_ROW and f"img{BAD_IMAGE_ROW}.dcm" in str(caught.value)


def test_cli_prepare_and_finalize(manifest, cache_u8, tmp_path, capsys):
    out = tmp_path / "cli"
    common = ["--size", str(SIZE), "--max-length", str(MAX_LENGTH), "--workers", "1", "--no-progress"]
    assert radmi_main(["prepare", str(manifest), "--out", str(out), "--shard", "0/2", *common]) == 0
    assert "shard 0/2: 4 kept, 1 bad of 5 rows" in capsys.readouterr().out
    # the second shard prepared elsewhere: copy it in, then finalize explicitly
    _prepare(manifest, tmp_path / "elsewhere", shard="1/2")
    shutil.copytree(tmp_path / "elsewhere/shards/00001-of-00002", out / "shards/00001-of-00002")
    assert radmi_main(["prepare", str(manifest), "--out", str(out), "--finalize"]) == 0
    assert "cache complete: 8 kept, 2 bad of 10 rows" in capsys.readouterr().out
    _assert_same_samples(_all_samples(out), _all_samples(cache_u8))
    assert radmi_main(["prepare", str(manifest), "--out", str(out), "--size", "64", "--no-progress"]) == 1
    assert "other parameters" in capsys.readouterr().err


def test_rows_outside_the_dataset_root_are_refused(manifest, tmp_path, capsys):
    """With --root, a row whose report (or image) resolves outside it never reaches a cache."""
    from radmi.cli import main
    from radmi.data.manifest import check_manifest
    from radmi.errors import ManifestError

    root = manifest.parent
    hostile = root / "hostile.csv"
    frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    frame.loc[1, "report_path"] = "/etc/passwd"
    frame.loc[2, "image_path"] = "../../elsewhere/x.dcm"
    frame.to_csv(hostile, index=False)
    out = tmp_path / "cache"
    with pytest.raises(ManifestError, match="outside the dataset root") as caught:
        _prepare(hostile, out, root=root)
    assert (
        caught.value.row == 1
        and "/etc/passwd" in str(caught.value)
        and "--allow-outside-root" in str(caught.value)
    )
    assert not out.exists()
    args = [
        "prepare",
        str(hostile),
        "--out",
        str(out),
        "--no-progress",
        "--workers",
        "1",
        "--root",
        str(root),
    ]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("radmi prepare: error: ") and "outside the dataset root" in err
    assert not out.exists()
    # manifest check lists both rows (never opening them); --allow-outside-root turns the check off
    problems = check_manifest(hostile, progress=False, root=root).problems
    outside = problems[problems["problem"].str.contains("outside the dataset root")]
    assert sorted(zip(outside["row"], outside["column"], strict=True)) == [
        (1, "report_path"),
        (2, "image_path"),
    ]
    relaxed = check_manifest(hostile, progress=False, root=root, allow_outside_root=True).problems
    assert not relaxed["problem"].str.contains("outside").any()
    # a manifest kept elsewhere, with absolute paths into the data folder, is fine with --root naming that folder
    moved = tmp_path / "elsewhere.csv"
    frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    for column in ("image_path", "report_path"):
        frame[column] = [str(root / p) if p else p for p in frame[column]]
    frame.to_csv(moved, index=False)
    with pytest.raises(ManifestError, match="outside the dataset root"):
        _prepare(moved, out, root=tmp_path / "other")
    assert _prepare(moved, out, root=root, workers=1).rows == ROWS
