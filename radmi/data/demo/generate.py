"""``generate(...)``: write a whole synthetic MIMIC-CXR-layout dataset (DICOMs, reports, root CSVs, ground truth).

Planning (ids, subjects, splits, dates) runs in the calling process from ``seed``; each study is then
rendered and written by a worker from its own seed ``(seed, study index)``, so the output is byte-identical
for the same arguments whatever the number of workers.
"""

from __future__ import annotations

import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from radmi.data.demo import findings as F
from radmi.data.demo import layout
from radmi.data.demo.anatomy import Patient
from radmi.data.demo.dicom_writer import DicomStyle, build_dataset, to_stored_values, write_dicom
from radmi.data.demo.phantom import Acquisition, render
from radmi.data.demo.report_text import sentence_indices, write_report
from radmi.errors import RadmiError

VIEWS = ("frontal", "both")
COMPRESS = ("mixed", "none")
P_LATERAL = 0.75  # share of studies with a lateral image when views="both"
STUDIES_PER_SUBJECT = 2.2  # mean


@dataclass(frozen=True)
class StudyPlan:
    """Everything a worker needs to write one study (picklable)."""

    index: int
    subject_index: int
    subject_id: str
    study_id: str
    split: str
    patient_name: str
    patient_id: str
    study_date: str
    seed: int
    size: int
    views: str
    compress: str


@dataclass(frozen=True)
class GenerationSummary:
    """What ``generate`` wrote: the root folder and the counts."""

    out: Path
    subjects: int
    studies: int
    images: int
    findings: int


def plan_studies(studies: int, seed: int, size: int, views: str, compress: str) -> list[StudyPlan]:
    """Subjects, ids, splits and dates of every study, from ``seed`` alone (several studies per subject)."""
    rng = np.random.default_rng([seed, 0])
    n_subjects = max(1, math.ceil(studies / STUDIES_PER_SUBJECT))
    subject_ids = layout.unique_ids(rng, n_subjects, 1)
    study_ids = layout.unique_ids(rng, studies, 5)
    # every subject gets one study, the rest go to random subjects
    owners = np.concatenate(
        [np.arange(n_subjects), rng.integers(0, n_subjects, size=max(0, studies - n_subjects))]
    )
    owners = owners[:studies]
    splits = layout.assign_splits(subject_ids, rng)
    names = [
        f"DEMO^{''.join(rng.choice(list('ABCDEFGHJKLMNPRSTUVWXYZ'), size=6))}" for _ in range(n_subjects)
    ]
    patient_ids = [f"RD{int(v):08X}" for v in rng.integers(0, 2**32, size=n_subjects)]
    base_days = rng.integers(0, 40 * 365, size=n_subjects)
    visits = np.zeros(n_subjects, dtype=np.int64)
    plans = []
    for index, (owner, study_id) in enumerate(zip(owners.tolist(), study_ids, strict=True)):
        visits[owner] += 1
        date = np.datetime64("2150-01-01") + np.timedelta64(int(base_days[owner] + 37 * visits[owner]), "D")
        plans.append(
            StudyPlan(index, owner, subject_ids[owner], study_id, splits[subject_ids[owner]], names[owner],
                      patient_ids[owner], str(date).replace("-", ""), seed, size, views, compress)
        )  # fmt: skip
    return plans


def _view_positions(rng: np.random.Generator, study: F.StudyFindings, views: str) -> list[str]:
    has_devices = any(f.label == F.SUPPORT_DEVICES for f in study.findings)
    frontal = "AP" if rng.random() < (0.7 if has_devices else 0.35) else "PA"
    positions = [frontal]
    if views == "both" and rng.random() < P_LATERAL:
        positions.append("LATERAL" if rng.random() < 0.85 else "LL")
    return positions


_VIEW_MEANING = {
    "PA": "postero-anterior",
    "AP": "antero-posterior",
    "LATERAL": "lateral",
    "LL": "left lateral",
}


def write_study(plan: StudyPlan, out: Path) -> tuple[list[dict], dict, list[dict]]:
    """Render and write one study (its report and images).

    Returns:
        ``(image records, study record, finding-location records)`` for the root CSVs.
    """
    rng = np.random.default_rng([plan.seed, 10, plan.index])
    patient = Patient.sample(np.random.default_rng([plan.seed, 20, plan.subject_index]))
    study = F.sample_findings(rng)
    report = write_report(study, rng, plan.views)
    report_file = out / layout.report_path(plan.subject_id, plan.study_id)
    report_file.parent.mkdir(parents=True, exist_ok=True)
    report_file.write_text(report.text, encoding="utf-8", newline="\n")
    sentence_index = sentence_indices(report.text, report.finding_sentences)

    images, locations = [], []
    positions = _view_positions(rng, study, plan.views)
    for position in positions:
        view = "lateral" if position in ("LATERAL", "LL") else "frontal"
        dicom = layout.dicom_id(rng)
        image_seed = int(rng.integers(2**31))
        acquisition = Acquisition.sample(rng, plan.size, view)
        style = DicomStyle.sample(rng, plan.compress)
        rendered = render(patient, study.findings, acquisition, view, image_seed)
        ds = build_dataset(
            to_stored_values(rendered.image, style), style, seed=plan.seed, study_id=plan.study_id,
            dicom_id=dicom, patient_name=plan.patient_name, patient_id=plan.patient_id,
            view_position=position, study_date=plan.study_date,
        )  # fmt: skip
        path = layout.image_path(plan.subject_id, plan.study_id, dicom)
        write_dicom(out / path, ds)
        exam = "CHEST (PA AND LAT)" if plan.views == "both" else f"CHEST ({position})"
        images.append({
            "dicom_id": dicom, "subject_id": plan.subject_id, "study_id": plan.study_id, "path": path,
            "split": plan.split, "PerformedProcedureStepDescription": exam, "ViewPosition": position,
            "Rows": acquisition.rows, "Columns": acquisition.cols, "StudyDate": plan.study_date,
            "StudyTime": f"{(plan.index * 7919) % 240000:06d}.000", "ProcedureCodeSequence_CodeMeaning": exam,
            "ViewCodeSequence_CodeMeaning": _VIEW_MEANING[position],
            "PatientOrientationCodeSequence_CodeMeaning": "Erect" if position != "AP" else "Recumbent",
        })  # fmt: skip
        for k, (finding, box) in enumerate(zip(study.findings, rendered.boxes, strict=True)):
            if box is None:
                continue
            locations.append({
                "dicom_id": dicom, "study_id": plan.study_id, "subject_id": plan.subject_id,
                "label": finding.label, "side": finding.side, "zone": finding.zone, "severity": finding.severity,
                "hedged": int(finding.hedged), "x0": box[0], "y0": box[1], "x1": box[2], "y1": box[3],
                "sentence_index": sentence_index[k],
            })  # fmt: skip
    record = {"subject_id": plan.subject_id, "study_id": plan.study_id, **study.labels(),
              "edema_severity": study.edema_severity}  # fmt: skip
    return images, record, locations


def _write_study_star(args: tuple[StudyPlan, Path]):
    return write_study(*args)


def generate(
    out: str | Path,
    studies: int,
    seed: int = 0,
    size: int = 512,
    views: str = "frontal",
    compress: str = "mixed",
    workers: int = 1,
    progress: bool = True,
) -> GenerationSummary:
    """Write a synthetic MIMIC-CXR-layout dataset.

    Args:
        out: the dataset root (created; must be empty or absent).
        studies: number of studies (about 2.2 per subject).
        seed: the only source of randomness: same arguments, same bytes.
        size: stored image rows in pixels (columns are 82-100% of it).
        views: ``"frontal"`` (one PA/AP image per study) or ``"both"`` (plus a LATERAL/LL image for ~75%).
        compress: ``"mixed"`` (about 45% RLE / JPEG-LS / JPEG 2000 lossless) or ``"none"``.
        workers: processes rendering studies in parallel (1 = in this process).
        progress: show a tqdm progress bar.

    Returns:
        ``GenerationSummary`` with the counts written.

    Raises:
        RadmiError: for a non-empty ``out`` or invalid arguments.
    """
    out = Path(out)
    if views not in VIEWS:
        raise RadmiError(f"views must be one of {VIEWS}, got {views!r}")
    if compress not in COMPRESS:
        raise RadmiError(f"compress must be one of {COMPRESS}, got {compress!r}")
    if studies < 1 or size < 64 or workers < 1:
        raise RadmiError(f"need studies >= 1, size >= 64 and workers >= 1 (got {studies}, {size}, {workers})")
    if out.exists() and any(out.iterdir()):
        raise RadmiError("output folder is not empty; choose a new folder", path=out)
    out.mkdir(parents=True, exist_ok=True)
    plans = plan_studies(studies, seed, size, views, compress)
    jobs = [(plan, out) for plan in plans]
    bar = dict(total=len(jobs), desc="demo studies", unit="study", disable=not progress)
    if workers == 1:
        results = [write_study(*job) for job in tqdm(jobs, **bar)]
    else:
        context = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            chunk = max(1, min(16, len(jobs) // (workers * 8)))
            results = list(tqdm(pool.map(_write_study_star, jobs, chunksize=chunk), **bar))
    images = [row for result in results for row in result[0]]
    study_rows = [result[1] for result in results]
    locations = [row for result in results for row in result[2]]
    layout.write_root_csvs(out, images, study_rows, locations)
    return GenerationSummary(out, len({p.subject_id for p in plans}), len(plans), len(images), len(locations))
