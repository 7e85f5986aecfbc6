"""The standard per-row transform: one manifest row (dict) -> one sample dict of ``docs/architecture.md``.

``sample_transform()`` is what ``radmi prepare``, training, prediction and the benchmarks reuse; its parts
(``image_transforms``, ``text_transforms``, ``label_transforms``) are exposed for callers that need only one
modality (e.g. a cache that stores images and tokens separately).

Output keys: ``image`` (MetaTensor 1 x S x S float32 in [0, 1], bright = dense), ``report`` (the chosen
sections' text), ``input_ids``/``attention_mask``/``sentence_ids`` (T int64), ``labels``/``label_mask``
(14 float32), ``edema_severity`` (int64, -1 when blank), ``study_id``/``subject_id`` (int64), plus the
manifest's string columns (``dicom_id``, ``image_path``, ``report_path``, ``view``, ``split``) and ``row``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.transforms import Compose, CopyItemsd, DeleteItemsd, Lambdad, MapTransform

from radmi.data.labels import CHEXPERT_LABELS
from radmi.data.reports import DEFAULT_FALLBACK, DEFAULT_SECTIONS
from radmi.models.hub import OFFLINE_DEFAULT, load_tokenizer
from radmi.transforms.labels import CheXpertLabelsd
from radmi.transforms.text import LoadReportd, ParseReportd, TokenizeReportd

ID_KEYS = ("study_id", "subject_id")


def _to_int64(value) -> torch.Tensor:
    """A manifest id string (``"50414267"``) as an int64 scalar tensor."""
    return torch.tensor(int(value), dtype=torch.int64)


def image_transforms(
    image_size: int = 256, resize_mode: str = "pad", voi: str = "auto"
) -> list[MapTransform]:
    """``image_path`` -> ``image`` (1 x ``image_size`` x ``image_size``), DICOM or PNG/JPG by suffix."""
    from radmi.transforms.dicom import LoadXRayd
    from radmi.transforms.image import XRayResized

    return [
        CopyItemsd(keys="image_path", names="image"),
        LoadXRayd(keys="image", voi=voi),
        XRayResized(keys="image", size=image_size, mode=resize_mode),
    ]


class LoadReportIfAnyd(MapTransform):
    """``LoadReportd`` for manifests that may hold images without a report (an empty ``report_path``, e.g.
    CheXpert): such a row gets an empty ``report``, hence no sentences and only the special tokens, so
    ``radmi prepare`` and classification work on it. Pretraining refuses such data
    (:func:`radmi.data.source.require_reports`); a missing or empty report *file* is still a ``ReportError``.
    """

    def __init__(self, keys: str = "report_path", output_key: str = "report") -> None:
        super().__init__(keys)
        self.output_key = output_key
        self.load = LoadReportd(keys=keys, output_key=output_key)

    def __call__(self, data) -> dict:
        d = dict(data)
        if all(not str(d[key]).strip() for key in self.key_iterator(d)):
            d[self.output_key] = ""
            return d
        return self.load(d)


def text_transforms(
    tokenizer=OFFLINE_DEFAULT,
    max_length: int = 128,
    sections: Sequence[str] = DEFAULT_SECTIONS,
    fallback: str | None = DEFAULT_FALLBACK,
    max_sentences: int | None = None,
) -> list[MapTransform]:
    """``report_path`` -> ``report``, ``input_ids``, ``attention_mask``, ``sentence_ids`` (T = ``max_length``).

    An empty ``report_path`` (no report) gives an empty ``report`` and only the special tokens."""
    if isinstance(tokenizer, str):
        tokenizer = load_tokenizer(tokenizer)  # once, not per transform instance
    return [
        LoadReportIfAnyd(keys="report_path", output_key="report"),
        ParseReportd(keys="report", sections=sections, fallback=fallback, sentences_key="sentences"),
        TokenizeReportd(tokenizer, keys="sentences", max_length=max_length, max_sentences=max_sentences),
        DeleteItemsd(keys="sentences"),  # variable-length lists do not collate
    ]


def label_transforms(label_policy: str = "ignore", blank_policy: str = "negative") -> list[MapTransform]:
    """The 14 label columns -> ``labels``/``label_mask``; ``edema_severity`` -> int64; ids -> int64."""
    return [
        CheXpertLabelsd(keys=CHEXPERT_LABELS, uncertain=label_policy, blank=blank_policy),
        DeleteItemsd(keys=list(CHEXPERT_LABELS)),
        Lambdad(keys=ID_KEYS, func=_to_int64),
    ]


def sample_transform(
    image_size: int = 256,
    tokenizer=OFFLINE_DEFAULT,
    max_length: int = 128,
    label_policy: str = "ignore",
    blank_policy: str = "negative",
    sections: Sequence[str] = DEFAULT_SECTIONS,
    fallback: str | None = DEFAULT_FALLBACK,
    max_sentences: int | None = None,
    resize_mode: str = "pad",
    voi: str = "auto",
) -> Compose:
    """Compose turning a manifest row into the sample dict (see the module docstring).

    Args:
        image_size: side S of the square image, in pixels.
        tokenizer: a fast HF tokenizer or a name for ``radmi.models.hub.load_tokenizer``.
        max_length: T, tokens per report including special tokens (whole-sentence truncation).
        label_policy: uncertainty policy ``ignore`` | ``ones`` | ``zeros``.
        blank_policy: blank label policy ``negative`` | ``ignore``.
        sections, fallback: report sections fed to the model (``radmi.data.reports.report_sentences``).
        max_sentences: keep at most this many sentences.
        resize_mode: ``pad`` (letterbox) or ``crop`` (centre crop), see ``XRayResize``.
        voi: DICOM VOI handling, see ``LoadXRayDicom``.
    """
    return Compose(
        [
            *image_transforms(image_size, resize_mode, voi),
            *text_transforms(tokenizer, max_length, sections, fallback, max_sentences),
            *label_transforms(label_policy, blank_policy),
        ]
    )
