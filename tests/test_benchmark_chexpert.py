"""``radmi benchmark``'s classification rows run on a dataset without reports (a CheXpert manifest)."""

from __future__ import annotations

import pandas as pd
from chexpert_factory import write_chexpert

from radmi.cli import main


def test_benchmark_classification_rows_on_a_chexpert_manifest(tmp_path, capsys):
    dataset = write_chexpert(tmp_path / "data", train_patients=16, valid_patients=6)
    manifest = tmp_path / "chexpert.csv"
    assert main(["manifest", "chexpert", str(dataset), "--out", str(manifest), "--val-fraction", "0.25"]) == 0
    out = tmp_path / "bench"
    argv = ["benchmark", "--data", str(manifest), "--out", str(out), "--preset", "smoke", "--inits", "random"]
    assert main(argv) == 0
    table = pd.read_csv(out / "classification.csv")
    assert set(table["init"]) == {"random"} and table["macro_auroc"].notna().any()
    assert (out / "results.md").is_file()
    # pretraining rows are refused on data without reports, in one line
    capsys.readouterr()
    argv = ["benchmark", "--data", str(manifest), "--out", str(out), "--preset", "smoke", "--inits", "global MI"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no report" in err[0]
