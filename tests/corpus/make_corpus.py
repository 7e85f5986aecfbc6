"""Generate the hostile-input regression corpus (issue 17): >= 100 broken or unusual files, nothing committed.

    python tests/corpus/make_corpus.py OUT_DIR      # writes OUT_DIR/<class>__<variant>.<ext> and corpus.csv

Each file belongs to a class of the audit (memory bomb, malformed header, silently-wrong output, special
file, truncation, colour/multi-frame, PNG/JPG, Deflated-dataset bomb, codestream header that disagrees with the
DICOM header) and carries its ``expect``: ``error`` (must end in a radmi error)
or ``image`` (must load as a correct 1 x H x W image in [0, 1]). ``corpus.csv`` lists
``name, klass, expect, path``. :func:`make_corpus` is what the tests call.
"""

from __future__ import annotations

import gzip
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dicom_factory import (  # noqa: E402
    jpeg_baseline_dataset,
    jpeg_lossless_dataset,
    known_pixels,
    write_dicom,
    xray_dataset,
)
from hostile_factory import (  # noqa: E402
    deflate_bomb,
    edit_first_frame,
    gzip_bomb,
    huge_declared_dicom,
    jp2_with_empty_box,
    jp2_wrapped,
    png_with_declared_size,
    raw_element,
    set_codestream_size,
    set_rle_segments,
    set_rows_columns,
    with_app_segments,
    write_deflated,
)
from PIL import Image  # noqa: E402
from pydicom import uid  # noqa: E402


def _ds(rows: int = 24, cols: int = 20, **header):
    return xray_dataset(
        known_pixels(rows=rows, cols=cols, bits_stored=header.get("bits_stored", 12)), **header
    )


def _dicom(path: Path, ds, **kwargs) -> Path:
    return write_dicom(path.with_suffix(".dcm"), ds, **kwargs)


def _cut(path: Path, keep: int | float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(keep * len(data)) if isinstance(keep, float) else keep])
    return path


def _png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path = path.with_suffix(".png")
    Image.fromarray(array, mode=mode).save(path)
    return path


Builder = Callable[[Path], Path]
_CODESTREAM_SYNTAX = {"jpeg_ls": uid.JPEGLSLossless, "j2k": uid.JPEG2000Lossless, "rle": uid.RLELossless}


def _compressed(kind: str, edit: Callable[[bytes], bytes] | None = None, rows: int | None = None) -> Builder:
    """A 64 x 48 greyscale compressed DICOM (``kind``: jpeg_baseline, jpeg_lossless, jpeg_ls, j2k, jp2, rle),
    its first frame rewritten by ``edit`` and its header's Rows set to ``rows`` when given."""

    def build(p: Path) -> Path:
        stored = known_pixels(rows=64, cols=48)
        if kind == "jpeg_baseline":
            path = _dicom(p, jpeg_baseline_dataset(known_pixels(rows=64, cols=48, bits_stored=8)))
        elif kind == "jpeg_lossless":
            path = _dicom(p, jpeg_lossless_dataset(stored))
        else:
            syntax = _CODESTREAM_SYNTAX.get(kind, uid.JPEG2000Lossless)
            path = _dicom(p, xray_dataset(stored), transfer_syntax=syntax)
        if kind == "jp2":
            edit_first_frame(path, lambda frame: jp2_wrapped(frame, 64, 48))
        if edit is not None:
            edit_first_frame(path, edit)
        if rows is not None:
            set_rows_columns(path, rows, 48)
        return path

    return build


def _cases() -> list[tuple[str, str, str, Builder]]:
    """(class, variant, expect, build(stem) -> path)."""
    cases: list[tuple[str, str, str, Builder]] = []

    def add(klass: str, variant: str, expect: str, build: Builder) -> None:
        cases.append((klass, variant, expect, build))

    # memory bombs: declared sizes far beyond the data, compressed or gzip-inflated
    for rows, cols in [
        (65500, 65500),
        (16000, 16000),
        (65535, 1),
        (1, 65535),
        (9000, 9000),
        (40000, 2100),
    ]:
        add(
            "bomb",
            f"declared_{rows}x{cols}",
            "error",
            lambda p, r=rows, c=cols: huge_declared_dicom(p.with_suffix(".dcm"), r, c),
        )
    for syntax in (uid.RLELossless, uid.JPEGLSLossless, uid.JPEG2000Lossless):

        def compressed_bomb(p, syntax=syntax):
            import pydicom

            path = _dicom(p, _ds(rows=64, cols=64), transfer_syntax=syntax)
            ds = pydicom.dcmread(path)
            ds.Rows = ds.Columns = 65535
            ds.save_as(path)
            return path

        add("bomb", f"compressed_{syntax.name.replace(' ', '_')}", "error", compressed_bomb)
    for mb, expect in ((8, "error_or_image"), (480, "error")):
        add(
            "bomb",
            f"gzip_{mb}MB_zeros",
            expect,
            lambda p, mb=mb: gzip_bomb(p.with_suffix(".dcm.gz"), mb * 2**20),
        )
    for width, height in [(20000, 20000), (12000, 12000), (65535, 65535), (100000, 1000)]:
        add(
            "bomb",
            f"png_{width}x{height}",
            "error",
            lambda p, w=width, h=height: png_with_declared_size(p.with_suffix(".png"), w, h),
        )

    # malformed header values
    garbage = [b"abc", b"-1", b"3.5", b"\x00\x01", b"", b"2\\3", b"99999999999999999999"]
    for keyword in ("NumberOfFrames", "Rows", "Columns", "BitsStored", "BitsAllocated", "SamplesPerPixel"):
        for index, value in enumerate(garbage):
            if keyword in ("Rows", "Columns", "BitsStored", "BitsAllocated", "SamplesPerPixel"):
                # US elements: raw bytes of the wrong length or value
                value = [b"\xff\xff", b"\x00\x00", b"\x01", b"\x01\x02\x03\x04", b""][index % 5]
            add("header", f"{keyword}_{index}", "error_or_image",
                lambda p, k=keyword, v=value: _dicom(p, raw_element(_ds(), k, v)))  # fmt: skip
    for keyword in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth"):
        for value in (b"NaN", b"inf", b"-inf", b"abc", b"1\\nan"):
            header = {"rescale": (1.0, 0.0), "window": (2000.0, 1000.0)}
            add("nonfinite", f"{keyword}_{value.decode().replace(chr(92), '_')}", "error",
                lambda p, k=keyword, v=value, h=header: _dicom(p, raw_element(_ds(**h), k, v)))  # fmt: skip
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        for value in (b"abc\\def", b"0\\0", b"-0.1\\0.1", b"inf\\1", b"0.1", b"nan\\nan"):
            add("spacing", f"{keyword}_{value.decode().replace(chr(92), '_')}", "image",
                lambda p, k=keyword, v=value: _dicom(p, raw_element(_ds(), k, v)))  # fmt: skip
    for which in ("voi_lut", "modality_lut"):
        for length in (0, 1, 100):

            def short_lut(p, which=which, length=length):
                ds = _ds(**{which: (list(range(4096)), 0, 12)})
                (ds.VOILUTSequence if which == "voi_lut" else ds.ModalityLUTSequence)[0].LUTData = list(
                    range(length)
                ) or [0]
                if length == 0:
                    (ds.VOILUTSequence if which == "voi_lut" else ds.ModalityLUTSequence)[0].LUTDescriptor = [
                        0,
                        0,
                        16,
                    ]
                return _dicom(p, ds)

            add("lut", f"{which}_{length}_entries", "error", short_lut)
    add("lut", "window_width_0_beside_a_voi_lut", "error_or_image",
        lambda p: _dicom(p, raw_element(_ds(voi_lut=(list(range(4096)), 0, 12)), "WindowWidth", b"0")))  # fmt: skip

    # size mismatch and truncation
    for delta in (-1, 1, -5, 3):

        def mismatch(p, delta=delta):
            ds = _ds(rows=30, cols=30)
            ds.Rows = 30 + delta
            return _dicom(p, ds)

        add("size", f"rows_{delta:+d}", "error", mismatch)
    for keep in (0, 10, 128, 132, 300, 0.5, 0.9, 0.99):
        add("truncated", f"dicom_{keep}", "error", lambda p, k=keep: _cut(_dicom(p, _ds()), k))
    for keep in (10, 0.5, 0.8):  # (a PNG cut only in its 12-byte IEND chunk still holds the whole image)
        add("truncated", f"gzip_{keep}", "error",
            lambda p, k=keep: _cut(write_dicom(p.with_suffix(".dcm.gz"), _ds(), gzipped=True), k))  # fmt: skip
        add("truncated", f"png_{keep}", "error",
            lambda p, k=keep: _cut(_png(p, np.random.default_rng(0).integers(0, 256, (30, 20), dtype=np.uint8)), k))  # fmt: skip

    # Deflated transfer syntax: the dataset is inflated in bounded chunks and refused past max_gzip_bytes
    for gb in (1, 4):
        add("deflate", f"bomb_{gb}GB", "error",
            lambda p, gb=gb: deflate_bomb(p.with_suffix(".dcm"), gb * 2**30))  # fmt: skip
    add("deflate", "bomb_1GB_in_gzip", "error",
        lambda p: deflate_bomb(p.with_suffix(".dcm.gz"), 2**30, gzipped=True))  # fmt: skip
    add("deflate", "truncated", "error", lambda p: _cut(write_deflated(p.with_suffix(".dcm"), _ds()), 0.7))
    add("deflate", "ok", "image", lambda p: write_deflated(p.with_suffix(".dcm"), _ds()))

    # codestream header (JPEG SOF, JPEG-LS SOF55, JPEG 2000 SIZ, RLE header) against the DICOM header
    for kind in ("jpeg_baseline", "jpeg_lossless", "jpeg_ls", "j2k", "jp2"):
        add("codestream", f"{kind}_rows_65_codestream_64", "error", _compressed(kind, rows=65))
    for kind in ("jpeg_lossless", "j2k"):
        add("codestream", f"{kind}_declares_65535x65535", "error",
            _compressed(kind, lambda frame: set_codestream_size(frame, 65535, 65535)))  # fmt: skip
    add("codestream", "rle_3_segments_for_16_bits", "error",
        _compressed("rle", lambda frame: set_rle_segments(frame, 3)))  # fmt: skip
    add(
        "codestream",
        "j2k_garbled_siz",
        "error",
        _compressed("j2k", lambda frame: frame[:2] + b"\0\0" + frame[4:]),
    )
    add("codestream", "jpeg_cut_in_header", "error", _compressed("jpeg_lossless", lambda frame: frame[:6]))
    add("codestream", "jp2_box_of_length_0", "error",
        _compressed("j2k", lambda frame: jp2_with_empty_box(frame, 64, 48)))  # fmt: skip
    add("codestream", "jp2_ok", "image", _compressed("jp2"))
    add("codestream", "jpeg_sof_after_192KiB_ok", "image",
        _compressed("jpeg_baseline", lambda frame: with_app_segments(frame, 3)))  # fmt: skip

    # wrong kind of object
    for modality in ("CT", "MR", "US", "NM", "OT", "SR"):
        add("modality", modality, "error", lambda p, m=modality: _dicom(p, _ds(modality=m)))
    for modality in ("CR", "DX", "DR", "PX", ""):
        add(
            "ok",
            f"modality_{modality or 'missing'}",
            "image",
            lambda p, m=modality: _dicom(p, _ds(modality=m)),
        )
    add("kind", "multi_frame", "error",
        lambda p: _dicom(p, xray_dataset(np.stack([known_pixels(8, 8), known_pixels(8, 8)]), frames=2)))  # fmt: skip
    add("kind", "rgb", "error", lambda p: _dicom(
        p, xray_dataset(np.repeat(known_pixels(8, 8, bits_stored=8)[..., None], 3, -1), bits_stored=8,
                        photometric="RGB", samples_per_pixel=3)))  # fmt: skip
    add(
        "kind",
        "not_dicom_text",
        "error",
        lambda p: (p.with_suffix(".dcm").write_text("hello " * 100), p.with_suffix(".dcm"))[1],
    )
    add(
        "kind",
        "empty_file",
        "error",
        lambda p: (p.with_suffix(".dcm").write_bytes(b""), p.with_suffix(".dcm"))[1],
    )
    add(
        "kind",
        "zip_named_dcm",
        "error",
        lambda p: (p.with_suffix(".dcm").write_bytes(b"PK\x03\x04" + b"\0" * 300), p.with_suffix(".dcm"))[1],
    )
    add(
        "kind",
        "gzip_of_text",
        "error",
        lambda p: (
            p.with_suffix(".dcm.gz").write_bytes(gzip.compress(b"text" * 50)),
            p.with_suffix(".dcm.gz"),
        )[1],
    )
    add("kind", "png_rgb_colour", "error",
        lambda p: _png(p, np.stack([np.zeros((8, 8), np.uint8), np.full((8, 8), 255, np.uint8), np.zeros((8, 8), np.uint8)], -1)))  # fmt: skip
    add(
        "kind",
        "png_garbage",
        "error",
        lambda p: (
            p.with_suffix(".png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64)),
            p.with_suffix(".png"),
        )[1],
    )

    # special files and links
    def fifo(p):
        path = p.with_suffix(".dcm")
        os.mkfifo(path)
        return path

    def loop(p):
        path = p.with_suffix(".dcm")
        path.symlink_to(path.name)
        return path

    def dangling(p):
        path = p.with_suffix(".dcm")
        path.symlink_to("does-not-exist.dcm")
        return path

    def folder(p):
        path = p.with_suffix(".dcm")
        path.mkdir()
        return path

    add("special", "fifo", "error", fifo)
    add("special", "link_loop", "error", loop)
    add("special", "dangling_link", "error", dangling)
    add("special", "folder", "error", folder)

    # correct images that must keep loading
    for bits in (8, 12, 16):
        add("ok", f"bits_{bits}", "image", lambda p, b=bits: _dicom(p, _ds(bits_stored=b)))
    add("ok", "png_8bit", "image", lambda p: _png(p, np.arange(600, dtype=np.uint8).reshape(30, 20)))
    add("ok", "gzip", "image", lambda p: write_dicom(p.with_suffix(".dcm.gz"), _ds(), gzipped=True))
    add("ok", "rle", "image", lambda p: _dicom(p, _ds(), transfer_syntax=uid.RLELossless))
    return cases


def make_corpus(out: str | Path, classes: set[str] | None = None) -> list[dict[str, str]]:
    """Write the corpus under ``out`` and return its rows (``name, klass, expect, path``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for klass, variant, expect, build in _cases():
        if classes is not None and klass not in classes:
            continue
        name = f"{klass}__{variant}".replace(".", "p")  # no dot: with_suffix must not eat part of the name
        path = build(out / name)
        rows.append({"name": name, "klass": klass, "expect": expect, "path": str(path)})
    with open(out / "corpus.csv", "w") as file:
        file.write("name,klass,expect,path\n")
        file.writelines(f"{r['name']},{r['klass']},{r['expect']},{r['path']}\n" for r in rows)
    return rows


if __name__ == "__main__":
    made = make_corpus(sys.argv[1] if len(sys.argv) > 1 else "corpus_out")
    print(f"{len(made)} files")
