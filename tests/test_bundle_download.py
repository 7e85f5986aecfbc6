"""Download the MONAI way: serve the bundle zip on 127.0.0.1, fetch it with ``python -m monai.bundle download``,
check its SHA256, and run the downloaded bundle on demo DICOMs."""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest
import torch

from radmi.bundle.export import export_run
from radmi.bundle.predict import predict
from radmi.bundle.verify import read_sha256_file, verify_bundle
from radmi.data.demo import generate
from radmi.data.labels import CHEXPERT_LABELS
from radmi.transforms.dicom import LoadXRayDicom
from radmi.transforms.image import XRayResize
from tests._bundle_fixtures import TINY_SIZE, make_tiny_run

NAME = "radmi_cxr_findings"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


@pytest.fixture()
def served_zip(tmp_path):
    """Export a tiny run and serve its folder on an ephemeral port of 127.0.0.1 for the test's duration."""
    model = make_tiny_run(tmp_path / "run")
    exported = export_run(tmp_path / "run", tmp_path / "release", name=NAME, version="0.0.1")
    handler = functools.partial(_QuietHandler, directory=str(tmp_path / "release"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{exported.zip_path.name}"
        yield model, exported, url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_download_with_monai_cli_then_predict(served_zip, tmp_path):
    model, exported, url = served_zip
    downloads = tmp_path / "downloads"
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "download",
        "--name",
        NAME,
        "--url",
        url,
        "--bundle_dir",
        str(downloads),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]

    # MONAI keeps the zip as <bundle_dir>/<name>.zip and unpacks it beside: check the published hash
    downloaded_zip = downloads / f"{NAME}.zip"
    published = read_sha256_file(exported.sha256_path)
    assert hashlib.sha256(downloaded_zip.read_bytes()).hexdigest() == published
    assert verify_bundle(downloaded_zip, sha256=published).sha256 == published
    bundle_dir = downloads / NAME
    assert (bundle_dir / "models" / "model.pt").read_bytes() == (
        exported.bundle_dir / "models" / "model.pt"
    ).read_bytes()

    demo = tmp_path / "demo"
    generate(demo, studies=3, seed=7, size=96, compress="mixed", progress=False)
    summary = predict(
        bundle_dir, demo / "files", tmp_path / "pred.csv", device="cpu", batch_size=2, progress=False
    )
    assert (summary.num_images, summary.num_predicted, summary.num_failed) == (3, 3, 0)
    table = pd.read_csv(summary.csv_path)
    for row in table.to_dict("records"):
        image = XRayResize(TINY_SIZE, mode="pad")(LoadXRayDicom()(demo / "files" / row["path"]))  # relative
        with torch.no_grad():
            expected = torch.sigmoid(model(image.as_tensor()[None].float()))[0]
        got = torch.tensor([row[name] for name in CHEXPERT_LABELS], dtype=torch.float32)
        torch.testing.assert_close(got, expected, atol=2e-6, rtol=0)
