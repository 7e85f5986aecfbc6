"""A small Open-i (Indiana University chest X-ray collection) stand-in in the real layout, for the tests.

``write_openi(root)`` writes ``root/ecgen-radiology/<n>.xml`` report files in the release's NLM schema
(``eCitation`` with ``uId``, ``IUXRId``, ``MedlineCitation/Article/Abstract/AbstractText Label=...``,
``MeSH/major``, one ``parentImage id=...`` with its ``caption`` per image) and ``root/NLMCXR_png/<id>.png``
8-bit greyscale images: a frontal (bright blob in the lung zone the report names) and, for every other report,
a lateral. ``xml_report`` builds one file's text, for the bad-input tests.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image

ZONES = {
    "right upper": (0.3, 0.3),
    "right lower": (0.7, 0.3),
    "left upper": (0.3, 0.7),
    "left lower": (0.7, 0.7),
}


def xml_report(
    number: int,
    sections: dict[str, str],
    images: list[tuple[str, str]],
    mesh_major: list[str] = (),
) -> str:
    """The XML of one report, shaped like the release's ``ecgen-radiology/<number>.xml``."""
    abstract = "\n".join(
        f'        <AbstractText Label="{label}">{escape(text)}</AbstractText>'
        if text
        else f'        <AbstractText Label="{label}"/>'
        for label, text in sections.items()
    )
    mesh = "\n".join(f"    <major>{escape(term)}</major>" for term in mesh_major)
    parents = "\n".join(
        f"""  <parentImage id="{image_id}">
    <figureId>F{i + 1}</figureId>
    <caption>{escape(caption)}</caption>
    <panel type="single">
      <url>/hadoop/storage/radiology/extract/{image_id}.jpg</url>
      <imgModality>7</imgModality>
      <region type="panel"><globalImageFeatures><colorHistogram/></globalImageFeatures></region>
    </panel>
  </parentImage>"""
        for i, (image_id, caption) in enumerate(images)
    )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<eCitation>
  <meta type="rr"/>
  <uId id="CXR{number}"/>
  <pmcId id="{number}"/>
  <docSource>CXR</docSource>
  <IUXRId id="{number}"/>
  <licenseType>open-access</licenseType>
  <licenseURL>http://creativecommons.org/licenses/by-nc-nd/4.0/</licenseURL>
  <ccLicense>byncnd</ccLicense>
  <articleDate>2013-08-01</articleDate>
  <articleType>XR</articleType>
  <publisher>Indiana University</publisher>
  <title>Indiana University Chest X-ray Collection</title>
  <specialty>pulmonary diseases</specialty>
  <subset>CXR</subset>
  <MedlineCitation Owner="Indiana University" Status="supplied by publisher">
    <Article PubModel="Electronic">
      <Journal><JournalIssue><PubDate><Year>2013</Year></PubDate></JournalIssue></Journal>
      <ArticleTitle>Indiana University Chest X-ray Collection</ArticleTitle>
      <Abstract>
{abstract}
      </Abstract>
    </Article>
  </MedlineCitation>
  <MeSH>
{mesh}
  </MeSH>
{parents}
</eCitation>
"""


def _image(rng: np.random.Generator, size: int, zone: str | None) -> np.ndarray:
    rows, cols = np.mgrid[0:size, 0:size] / size
    image = 0.2 + 0.05 * rng.standard_normal((size, size))
    if zone is not None:
        centre_row, centre_col = ZONES[zone]
        image += 0.5 * np.exp(-(((rows - centre_row) ** 2 + (cols - centre_col) ** 2) / (2 * 0.06**2)))
    return np.clip(image * 255, 0, 255).astype(np.uint8)


def image_ids(number: int) -> list[str]:
    """The release's image id pattern: ``CXR<n>_1_IM-<nnnn>-1001`` (frontal), ``-2001`` (lateral)."""
    return [f"CXR{number}_1_IM-{number:04d}-1001", f"CXR{number}_1_IM-{number:04d}-2001"]


def write_openi(root: str | Path, reports: int = 24, size: int = 64, seed: int = 0) -> tuple[Path, Path]:
    """Write ``reports`` good reports and their images under ``root``; returns (XML folder, image folder).

    Report n has a frontal image and, when n is even, a lateral one; captions name one view ("PA chest"),
    "lateral chest" for the lateral, or both ("Xray Chest PA and Lateral", every third report).
    """
    root = Path(root)
    xml_dir, png_dir = root / "ecgen-radiology", root / "NLMCXR_png"
    xml_dir.mkdir(parents=True, exist_ok=True)
    png_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    zones = list(ZONES)
    for number in range(1, reports + 1):
        zone = zones[number % len(zones)]
        frontal, lateral = image_ids(number)
        both = number % 3 == 0
        images = [(frontal, "Xray Chest PA and Lateral" if both else "PA chest")]
        if number % 2 == 0:
            images.append((lateral, "Xray Chest PA and Lateral" if both else "Lateral chest x-XXXX"))
        for image_id, _ in images:
            Image.fromarray(_image(rng, size, zone)).save(png_dir / f"{image_id}.png")
        sections = {
            "COMPARISON": "None.",
            "INDICATION": "XXXX-year-old with cough",
            "FINDINGS": f"There is a nodule in the {zone} lung. The heart size is normal. No pneumothorax.",
            "IMPRESSION": f"Nodule in the {zone} lung.",
        }
        mesh = ["Nodule/lung/" + zone.replace(" ", "/")] + (["Cardiomegaly/mild"] if number % 4 == 0 else [])
        (xml_dir / f"{number}.xml").write_text(xml_report(number, sections, images, mesh), encoding="utf-8")
    return xml_dir, png_dir
