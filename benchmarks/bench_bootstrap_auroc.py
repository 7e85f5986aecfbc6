"""Speed of the patient-bootstrap AUROC/AUPRC CIs: radmi's vectorized draws vs scikit-learn called per draw.

    python benchmarks/bench_bootstrap_auroc.py --samples 5000 --labels 14 --draws 1000

Both compute the same numbers (checked here on every draw); the baseline is ``roc_auc_score`` and
``average_precision_score`` with ``sample_weight`` in a Python loop over the draws.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from radmi.eval.metrics import patient_bootstrap_weights, weighted_auroc, weighted_average_precision


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=5000, help="N images")
    parser.add_argument("--labels", type=int, default=14, help="L findings")
    parser.add_argument("--draws", type=int, default=1000, help="B bootstrap draws")
    parser.add_argument("--images-per-patient", type=int, default=2)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    y = (rng.random((args.samples, args.labels)) < 0.2).astype(float)
    s = np.round(y + rng.normal(0, 1, y.shape), 2)
    groups = np.arange(args.samples) // args.images_per_patient
    weights = patient_bootstrap_weights(groups, args.draws, seed=0)

    start = time.perf_counter()
    fast = [
        (weighted_auroc(y[:, j], s[:, j], weights), weighted_average_precision(y[:, j], s[:, j], weights))
        for j in range(args.labels)
    ]
    t_fast = time.perf_counter() - start

    start = time.perf_counter()
    slow = [
        (
            np.array([roc_auc_score(y[:, j], s[:, j], sample_weight=w) for w in weights]),
            np.array([average_precision_score(y[:, j], s[:, j], sample_weight=w) for w in weights]),
        )
        for j in range(args.labels)
    ]
    t_slow = time.perf_counter() - start

    err = max(
        max(np.abs(a - c).max(), np.abs(b - d).max()) for (a, b), (c, d) in zip(fast, slow, strict=True)
    )
    print(f"N={args.samples} L={args.labels} B={args.draws}")
    print(f"vectorized (radmi): {t_fast:.2f} s")
    print(f"scikit-learn loop:  {t_slow:.2f} s (baseline)")
    print(f"speed-up: {t_slow / t_fast:.1f}x; max abs difference {err:.2e}")


if __name__ == "__main__":
    main()
