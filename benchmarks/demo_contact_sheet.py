"""Draw a contact sheet of demo studies: each frontal image (as radmi loads it) with its ground-truth boxes and
the report's IMPRESSION underneath.

    OMP_NUM_THREADS=1 python benchmarks/demo_contact_sheet.py --out docs/images/demo_contact_sheet.png

Generates a small dataset (``--studies``, ``--seed``) in a temporary folder unless ``--data`` names one.
"""

from __future__ import annotations

import argparse
import tempfile
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from radmi.data.demo import generate, layout  # noqa: E402
from radmi.data.reports import parse_report  # noqa: E402
from radmi.transforms.dicom import LoadXRayDicom  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("docs/images/demo_contact_sheet.png"))
    parser.add_argument("--data", type=Path, help="an existing demo dataset (default: generate one)")
    parser.add_argument("--studies", type=int, default=12)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--columns", type=int, default=4)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="radmi-contact-") as scratch:
        root = args.data
        if root is None:
            root = Path(scratch) / "data"
            generate(root, args.studies, seed=args.seed, size=args.size, views="frontal", progress=False)
        draw_sheet(root, args)
    print(f"wrote {args.out}")


def draw_sheet(root: Path, args: argparse.Namespace) -> None:
    """Draw the first ``args.studies`` frontal images of ``root`` with boxes and impressions into ``args.out``."""
    metadata = pd.read_csv(
        root / layout.METADATA, dtype={"subject_id": str, "study_id": str, "dicom_id": str}
    )
    records = pd.read_csv(root / layout.RECORD_LIST, dtype=str)[["dicom_id", "path"]]
    frontal = metadata[metadata.ViewPosition.isin(["PA", "AP"])].merge(records, on="dicom_id")
    frontal = frontal.head(args.studies)
    boxes = pd.read_csv(root / layout.FINDING_LOCATIONS, dtype={"dicom_id": str})

    load = LoadXRayDicom()
    rows = -(-len(frontal) // args.columns)
    figure, axes = plt.subplots(rows, args.columns, figsize=(4.2 * args.columns, 6.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, study in zip(axes.flat, frontal.itertuples(), strict=False):
        image = load(str(root / study.path))[0].numpy()  # rows x cols, bright = dense
        ax.imshow(image, cmap="gray", vmin=0, vmax=1)
        for box in boxes[boxes.dicom_id == study.dicom_id].itertuples():
            ax.add_patch(Rectangle((box.x0 - 0.5, box.y0 - 0.5), box.x1 - box.x0, box.y1 - box.y0,
                                   fill=False, edgecolor="tab:red", linewidth=1.2))  # fmt: skip
            ax.text(box.x0, box.y0 - 2, box.label, color="tab:red", fontsize=6, va="bottom")
        report = (root / layout.report_path(study.subject_id, study.study_id)).read_text()
        impression = " ".join(parse_report(report)["impression"].split())
        caption = textwrap.fill(impression, 48)
        caption = "\n".join(caption.splitlines()[:5])
        ax.set_title(f"{study.ViewPosition}  s{study.study_id}", fontsize=8)
        ax.text(0.0, -0.02, caption, transform=ax.transAxes, fontsize=7, va="top", ha="left", wrap=True)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=80)
    plt.close(figure)


if __name__ == "__main__":
    main()
