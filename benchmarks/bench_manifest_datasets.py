"""Time ``build_openi_manifest`` and ``build_chexpert_manifest`` on generated trees of the releases' full sizes.

Generates, in a temporary folder (or ``--root``):

- an Open-i tree: 3,955 report XML files in the release's NLM schema (``ecgen-radiology/<n>.xml``, four
  ``AbstractText`` sections, MeSH terms, one ``parentImage`` per image) listing 7,470 images in all, and the
  7,470 image files (``NLMCXR_png/<id>.png``). The builder only lists the image folder, so the files are empty;
- a CheXpert-v1.0-small tree: ``train.csv`` (223,414 rows), ``valid.csv`` (234) and ``test.csv`` (668) =
  224,316 rows with the release's columns and label values, and one empty ``.jpg`` per row (the builder only
  ``stat``s them; it opens none).

Then times each build ``--repeats`` times (the Open-i build includes writing its 3,955 report files and the
manifest; the CheXpert build returns the table, as ``radmi manifest chexpert`` does before writing it) and
prints the times with ``/proc/loadavg`` before and after. Targets (issue 16): Open-i < 10 s, CheXpert < 30 s
on one core::

    taskset -c 0 python benchmarks/bench_manifest_datasets.py
    python benchmarks/bench_manifest_datasets.py --skip-chexpert-files   # CheXpert CSVs only, check_images=False
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from radmi.data.manifest import build_chexpert_manifest, build_openi_manifest

OPENI_REPORTS, OPENI_IMAGES = 3_955, 7_470
CHEXPERT_ROWS = {"train.csv": 223_414, "valid.csv": 234, "test.csv": 668}
CHEXPERT_LABELS_CSV_ORDER = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices",
)  # fmt: skip

_XML = """<?xml version="1.0" encoding="utf-8"?>
<eCitation>
  <meta type="rr"/>
  <uId id="CXR{n}"/>
  <pmcId id="{n}"/>
  <docSource>CXR</docSource>
  <IUXRId id="{n}"/>
  <licenseType>open-access</licenseType>
  <licenseURL>http://creativecommons.org/licenses/by-nc-nd/4.0/</licenseURL>
  <ccLicense>byncnd</ccLicense>
  <articleDate>2013-08-01</articleDate>
  <publisher>Indiana University</publisher>
  <title>Indiana University Chest X-ray Collection</title>
  <MedlineCitation Owner="Indiana University" Status="supplied by publisher">
    <Article PubModel="Electronic">
      <Journal><JournalIssue><PubDate><Year>2013</Year></PubDate></JournalIssue></Journal>
      <ArticleTitle>Indiana University Chest X-ray Collection</ArticleTitle>
      <Abstract>
        <AbstractText Label="COMPARISON">None.</AbstractText>
        <AbstractText Label="INDICATION">XXXX-year-old male with chest pain.</AbstractText>
        <AbstractText Label="FINDINGS">The cardiac silhouette and mediastinum size are within normal limits.
          There is no pulmonary edema. There is no focal consolidation. There are no XXXX of a pleural
          effusion. There is no evidence of pneumothorax.</AbstractText>
        <AbstractText Label="IMPRESSION">Normal chest x-XXXX.</AbstractText>
      </Abstract>
    </Article>
  </MedlineCitation>
  <MeSH>
    <major>normal</major>
  </MeSH>
{images}
</eCitation>
"""
_IMAGE = """  <parentImage id="{id}">
    <figureId>F{k}</figureId>
    <caption>{caption}</caption>
    <panel type="single">
      <url>/hadoop/storage/radiology/extract/{id}.jpg</url>
      <imgModality>7</imgModality>
      <region type="panel"><globalImageFeatures><colorHistogram/></globalImageFeatures></region>
    </panel>
  </parentImage>"""


def generate_openi(root: Path) -> tuple[Path, Path]:
    """3,955 XML files listing 7,470 images (3,515 reports with two, 440 with one) and the empty image files."""
    xml_dir, png_dir = root / "ecgen-radiology", root / "NLMCXR_png"
    xml_dir.mkdir(parents=True, exist_ok=True)
    png_dir.mkdir(parents=True, exist_ok=True)
    two = OPENI_IMAGES - OPENI_REPORTS  # reports with a second (lateral) image
    for n in range(1, OPENI_REPORTS + 1):
        ids = [f"CXR{n}_1_IM-{n:04d}-1001"] + ([f"CXR{n}_1_IM-{n:04d}-2001"] if n <= two else [])
        captions = ["Xray Chest PA and Lateral"] * len(ids) if n % 2 else ["PA chest", "Lateral chest"]
        images = "\n".join(
            _IMAGE.format(id=i, k=k + 1, caption=c)
            for k, (i, c) in enumerate(zip(ids, captions[: len(ids)], strict=True))
        )
        (xml_dir / f"{n}.xml").write_text(_XML.format(n=n, images=images), encoding="utf-8")
        for image_id in ids:
            (png_dir / f"{image_id}.png").touch()
    return xml_dir, png_dir


def generate_chexpert(root: Path, image_files: bool, seed: int = 0) -> Path:
    """The three CSVs of CheXpert-v1.0-small at full size (and the empty image files when ``image_files``)."""
    rng = np.random.default_rng(seed)
    dataset = root / "CheXpert-v1.0-small"
    dataset.mkdir(parents=True, exist_ok=True)
    first_patient = {"train.csv": 1, "valid.csv": 64_541, "test.csv": 64_741}
    n_patients = {"train.csv": 64_540, "valid.csv": 200, "test.csv": 500}  # the release's
    for name, rows in CHEXPERT_ROWS.items():
        part = name.removesuffix(".csv")
        # 1-2 images per study (the release: 187,641 train studies)
        patients = first_patient[name] + np.sort(rng.integers(0, n_patients[name], rows))
        _, first = np.unique(patients, return_index=True)
        within = np.arange(rows) - np.repeat(first, np.diff(np.append(first, rows)))
        study = 1 + within // 2
        lateral = (within % 2 == 1) & (rng.random(rows) < 0.8)
        view = "view" + pd.Series(within % 2 + 1).astype(str) + np.where(lateral, "_lateral", "_frontal")
        paths = (
            f"CheXpert-v1.0-small/{part}/patient"
            + pd.Series(patients).map("{:05d}".format)
            + "/study" + pd.Series(study).astype(str) + "/" + view + ".jpg"
        )  # fmt: skip
        frame = pd.DataFrame(
            {
                "Path": paths,
                "Sex": rng.choice(["Female", "Male"], rows),
                "Age": rng.integers(18, 90, rows),
                "Frontal/Lateral": np.where(lateral, "Lateral", "Frontal"),
                "AP/PA": np.where(lateral, "", rng.choice(["AP", "PA"], rows, p=[0.85, 0.15])),
            }
        )
        values = np.array(["1.0", "0.0", "-1.0", ""]) if part == "train" else np.array(["1.0", "0.0"])
        for label in CHEXPERT_LABELS_CSV_ORDER:
            frame[label] = rng.choice(values, rows)
        frame.to_csv(dataset / name, index=False)
        if image_files:
            for relative in paths.str.split("/", n=1).str[1]:
                target = dataset / relative
                if not target.parent.is_dir():
                    target.parent.mkdir(parents=True)
                target.touch()
    return dataset


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "n/a"


def timed(label: str, repeats: int, build) -> list[float]:
    """Run ``build`` ``repeats`` times; print wall-clock seconds (and this process's CPU seconds) of each."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        rows = len(build())
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    runs = ", ".join(f"{w:.2f} s (cpu {c:.2f})" for w, c in zip(wall, cpu, strict=True))
    print(
        f"{label}: {rows:,} rows; {runs}; best {min(wall):.2f} s, median {sorted(wall)[len(wall) // 2]:.2f} s"
    )
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root", type=Path, default=None, help="where to generate (default: a temporary folder)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-openi", action="store_true")
    parser.add_argument("--skip-chexpert", action="store_true")
    parser.add_argument(
        "--skip-chexpert-files", action="store_true", help="no image files; time with check_images=False only"
    )
    args = parser.parse_args()
    print(f"python {platform.python_version()}, pandas {pd.__version__}, {os.cpu_count()} CPUs, "
          f"affinity {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else 'n/a'} core(s)")  # fmt: skip
    with tempfile.TemporaryDirectory(dir=args.root) as tmp:
        root = Path(tmp)
        if not args.skip_openi:
            start = time.perf_counter()
            xml_dir, png_dir = generate_openi(root / "openi")
            print(
                f"generated Open-i: {OPENI_REPORTS:,} XML, {OPENI_IMAGES:,} images in {time.perf_counter() - start:.1f} s"
            )
            print(f"loadavg before: {loadavg()}")
            timed(
                "build_openi_manifest (incl. writing 3,955 reports + the manifest)",
                args.repeats,
                lambda: build_openi_manifest(xml_dir, png_dir, root / "out" / "openi.csv", progress=False),
            )
            print(f"loadavg after:  {loadavg()}")
        if not args.skip_chexpert:
            start = time.perf_counter()
            dataset = generate_chexpert(root / "chexpert", image_files=not args.skip_chexpert_files)
            print(
                f"generated CheXpert: {sum(CHEXPERT_ROWS.values()):,} rows in {time.perf_counter() - start:.1f} s"
            )
            print(f"loadavg before: {loadavg()}")
            if not args.skip_chexpert_files:
                timed(
                    "build_chexpert_manifest (check_images=True: one stat per row)",
                    args.repeats,
                    lambda: build_chexpert_manifest(dataset),
                )
            timed(
                "build_chexpert_manifest (check_images=False)",
                args.repeats,
                lambda: build_chexpert_manifest(dataset, check_images=False),
            )
            print(f"loadavg after:  {loadavg()}")


if __name__ == "__main__":
    main()
