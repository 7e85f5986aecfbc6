"""radmi.data.demo: a synthetic MIMIC-CXR-layout dataset whose reports describe what is drawn in the images.

``generate(out, studies, seed, ...)`` writes DICOMs, reports, the MIMIC-CXR root CSVs and
``finding-locations.csv.gz`` (a ground-truth box per drawn finding). ``render`` draws a single radiograph and
can leave findings out, which is how the boxes are checked.
"""

from __future__ import annotations

from radmi.data.demo import layout
from radmi.data.demo.anatomy import Patient
from radmi.data.demo.findings import DRAWN_LABELS, Finding, StudyFindings, sample_findings
from radmi.data.demo.generate import GenerationSummary, generate, plan_studies, write_study
from radmi.data.demo.phantom import Acquisition, Rendered, render
from radmi.data.demo.report_text import Report, sentence_indices, write_report

__all__ = [
    "DRAWN_LABELS",
    "Acquisition",
    "Finding",
    "GenerationSummary",
    "Patient",
    "Rendered",
    "Report",
    "StudyFindings",
    "generate",
    "layout",
    "plan_studies",
    "render",
    "sample_findings",
    "sentence_indices",
    "write_report",
    "write_study",
]
