"""``radmi retrieve RUN_DIR --data DATA --split test``: image -> report and report -> image recall@1/5/10 of a
pretrained run on a split, with chance levels and patient-bootstrap CIs (:mod:`radmi.eval.retrieval`).

Every image of the split is scored against every distinct report of the split with the run's own critic, as in
pretraining's held-out retrieval. Writes ``retrieval.json`` and ``report.md`` to ``--out`` (default
``RUN_DIR/retrieval/SPLIT``). ``--query FILE.dcm --top 5`` also lists the study ids of the reports that best match
one image (report ids only: report text is never printed or logged).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="a `radmi pretrain` run directory")
    parser.add_argument(
        "--data", required=True, type=Path,
        help="a prepared cache (tokenized with the run's text model), a manifest CSV, or a MIMIC-CXR-layout folder",
    )  # fmt: skip
    parser.add_argument("--split", default="test", choices=("train", "validate", "test"))
    parser.add_argument("--out", type=Path, default=None, help="output folder (default RUN_DIR/retrieval/SPLIT)")
    parser.add_argument("--query", type=Path, default=None, help="an image (DICOM, PNG or JPG) to retrieve reports for")
    parser.add_argument("--top", type=int, default=5, help="reports listed for --query")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap draws for the CIs (patients resampled)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--trust", action="store_true", help="evaluate the run's config even if radmi did not write the run here"
    )


def run(args: argparse.Namespace) -> int:
    from radmi.bundle.runs import require_run
    from radmi.errors import ImageError

    run_dir = require_run(args.run_dir, "pretrain")  # before the slow imports: a wrong folder fails at once
    if args.query is not None and not args.query.is_file():
        raise ImageError("no such query image", path=args.query)
    from radmi.eval.retrieval import check_data, evaluate_retrieval, query_reports
    from radmi.eval.zero_shot import load_run

    check_data(run_dir, args.data, trust=args.trust)  # a wrong or mismatched data source fails before the model loads

    pretrained = load_run(run_dir, args.device, trust=args.trust)
    out = args.out or run_dir / "retrieval" / args.split
    result = evaluate_retrieval(
        pretrained, args.data, args.split, out, n_bootstrap=args.bootstrap, seed=args.seed,
        batch_size=args.batch_size, device=args.device,
    )  # fmt: skip
    print((out / "report.md").read_text())
    if args.query is not None:
        hits = query_reports(pretrained, result.features, args.query, args.top)
        (out / "query.json").write_text(json.dumps({"query": str(args.query), "reports": hits}, indent=2) + "\n")
        print(f"Reports of split {args.split} that best match {args.query} (study ids):")
        for hit in hits:
            same = f" (same text as {hit['same_text_studies']} other studies)" if hit["same_text_studies"] else ""
            print(f"  {hit['rank']}. study {hit['study_id']}  score {hit['score']:.4f}{same}")
    recall = result.metrics["image_to_report"].get("recall_at_5")
    tail = "" if recall is None else f"; image -> report recall@5 {recall['value']:.3f} (chance {recall['chance']:.3f})"
    print(f"radmi retrieve: {result.metrics['n_images']} images, {result.metrics['n_reports']} reports{tail}; wrote {out}")
    return 0
