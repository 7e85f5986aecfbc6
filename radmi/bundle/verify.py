"""Checking a findings bundle before it is shipped or used: hash, metadata, network in/out, TorchScript export.

Every check uses MONAI's own bundle tools where one exists:

- ``monai.bundle.verify_metadata`` validates ``configs/metadata.json`` against a JSON schema. Offline, radmi gives
  it ``radmi/bundle/metadata_schema.json`` (the specification's mandatory keys) as the local schema copy, so no
  download is attempted; ``online_schema=True`` lets MONAI fetch the schema named in the metadata instead.
- ``monai.bundle.verify_net_in_out`` builds ``network_def`` from ``configs/inference.json`` and checks its output
  channels and dtype against the metadata.
- ``monai.bundle.ckpt_export`` writes a TorchScript file from ``models/model.pt``; radmi loads it back and checks
  that it gives the same outputs as the eager network with the shipped weights.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from radmi.data.cache_store import file_sha256
from radmi.errors import BundleError
from radmi.trust import require_trusted, trusted_hashes

logger = logging.getLogger(__name__)

#: Files every radmi findings bundle carries (relative to the bundle root).
REQUIRED_FILES = (
    "configs/metadata.json",
    "configs/inference.json",
    "models/model.pt",
    "docs/README.md",
    "LICENSE",
)
#: The MONAI model-zoo limit for a file kept in the repository; larger weights go to large_files.yml.
MAX_REPO_FILE_BYTES = 25 * 1024 * 1024
LOCAL_SCHEMA = Path(__file__).with_name("metadata_schema.json")
#: Tolerance of the TorchScript-versus-eager output comparison (logits, float32).
TORCHSCRIPT_ATOL = 1e-4
#: Most bytes a bundle zip may unpack to (the sum of its members' declared sizes), checked before extraction.
MAX_EXTRACT_BYTES = 1 << 30
#: Most members a bundle zip may hold.
MAX_EXTRACT_MEMBERS = 10_000


@dataclass
class VerifyReport:
    """What :func:`verify_bundle` checked, for printing."""

    bundle_dir: Path
    sha256: str | None = None
    checks: list[str] = field(default_factory=list)

    def passed(self, what: str) -> None:
        self.checks.append(what)
        logger.info("bundle check passed: %s", what)


#: A SHA256 digest as ``sha256sum`` prints it: 64 hex digits.
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
#: BSD ``sha256 -r``/``shasum --tag`` style: ``SHA256 (name) = <hex>``.
_BSD_LINE = re.compile(r"SHA256\s*\((?P<name>.*)\)\s*=\s*(?P<digest>[0-9a-fA-F]{64})", re.IGNORECASE)


def _digest_and_name(line: str) -> tuple[str, str | None] | None:
    """``(hex, name)`` of one hash line (bare hash, ``<hex>  <name>``, ``<hex> *<name>`` or BSD style)."""
    line = line.strip()
    bsd = _BSD_LINE.fullmatch(line)
    if bsd:
        return bsd["digest"].lower(), bsd["name"].strip() or None
    digest, _, rest = line.partition(" ")
    if not _HEX_DIGEST.fullmatch(digest):
        return None
    name = rest.strip().lstrip("*").strip()  # "*name": sha256sum's binary-mode marker
    return digest.lower(), name or None


def parse_sha256(text: str, zip_name: str | None = None, *, source: str | Path | None = None) -> str:
    """The expected SHA256 from what a user pastes or a ``.sha256`` file holds.

    Accepted: a bare 64-digit hex hash; a ``sha256sum`` line ``<hex>  <name>`` (what ``radmi bundle export``
    writes into ``<zip>.sha256``; ``<hex> *<name>`` too); a BSD line ``SHA256 (<name>) = <hex>``. Several lines
    (a checksum list): the one whose name is ``zip_name`` is used; a single line is used whatever its name,
    since the zip may have been renamed after download.

    Args:
        text: the hash or the file's content.
        zip_name: the zip's file name, to pick a line of a checksum list.
        source: the file the text came from, for the error message.

    Raises:
        BundleError: no SHA256 in the text, or a list with no line for ``zip_name``.
    """
    lines = [line for line in str(text).splitlines() if line.strip()]
    if not lines:
        raise BundleError("empty SHA256: expected 64 hex digits, or a '<hash>  <zip name>' line", path=source)
    parsed = [_digest_and_name(line) for line in lines]
    if any(item is None for item in parsed):
        bad = lines[parsed.index(None)].strip()
        shown = bad if len(bad) <= 80 else bad[:77] + "..."
        raise BundleError(
            f"not a SHA256: {shown!r} (expected 64 hex digits, optionally followed by the zip name as in "
            "the .sha256 file)",
            path=source,
        )
    if len(parsed) == 1:
        return parsed[0][0]
    named = [(digest, Path(name).name) for digest, name in parsed if name is not None]
    matches = {digest for digest, name in named if name == zip_name}
    if len(matches) != 1:
        raise BundleError(
            f"{len(parsed)} SHA256 lines and {'none' if not matches else 'several'} for {zip_name or 'the zip'}",
            path=source,
        )
    return matches.pop()


def read_sha256_file(path: str | Path, zip_name: str | None = None) -> str:
    """The hash from a ``sha256sum``-style file (``<hex>  <name>``); see :func:`parse_sha256`."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise BundleError(f"cannot read the SHA256 file: {err.strerror}", path=path) from err
    if not text.strip():
        raise BundleError("empty SHA256 file", path=path)
    return parse_sha256(text, zip_name, source=path)


def check_sha256(zip_path: str | Path, expected: str) -> str:
    """Compare a zip's SHA256 with ``expected``; raise :class:`BundleError` on a mismatch. Returns the hash.

    ``expected`` is anything :func:`parse_sha256` accepts: a bare hash or the ``.sha256`` file's line.
    """
    zip_path = Path(zip_path)
    wanted = parse_sha256(expected, zip_path.name)
    actual = file_sha256(zip_path)
    if actual != wanted:
        raise BundleError(
            f"SHA256 mismatch: expected {wanted}, the file has {actual}. The download is "
            "corrupt or the bundle is not the one published; do not use it",
            path=zip_path,
        )
    return actual


def _bundle_root_in(folder: Path) -> Path:
    """The bundle root inside an extracted zip: the single top folder holding ``configs/metadata.json``."""
    if (folder / "configs" / "metadata.json").is_file():
        return folder
    roots = [p for p in folder.iterdir() if (p / "configs" / "metadata.json").is_file()]
    if len(roots) != 1:
        raise BundleError(
            "the zip does not hold exactly one bundle folder with configs/metadata.json", path=folder
        )
    return roots[0]


def _safe_extract(zip_path: Path, dest: Path, max_bytes: int | None = None) -> None:
    """Unpack ``zip_path`` into ``dest`` after checking every member stays inside it and the members' declared
    sizes add up to at most ``max_bytes`` (default :data:`MAX_EXTRACT_BYTES`). ``zipfile`` stops reading a
    member at its declared size, so a member cannot unpack to more than it declares."""
    limit = MAX_EXTRACT_BYTES if max_bytes is None else int(max_bytes)
    with zipfile.ZipFile(zip_path) as archive:
        members = archive.infolist()
        if len(members) > MAX_EXTRACT_MEMBERS:
            raise BundleError(
                f"the zip holds {len(members)} members, more than the {MAX_EXTRACT_MEMBERS} a bundle may have",
                path=zip_path,
            )
        total = sum(info.file_size for info in members)
        if total > limit:
            raise BundleError(
                f"the zip would unpack to {total / 2**20:.0f} MiB, over the {limit / 2**20:.0f} MiB limit of a "
                "bundle; nothing was unpacked",
                path=zip_path,
            )
        for member in archive.namelist():
            target = (dest / member).resolve()
            if not target.is_relative_to(dest.resolve()):
                raise BundleError(f"zip member escapes the extraction folder: {member}", path=zip_path)
        archive.extractall(dest)


def check_files(bundle_dir: Path) -> None:
    missing = [name for name in REQUIRED_FILES if not (bundle_dir / name).is_file()]
    if missing:
        raise BundleError(f"bundle files missing: {', '.join(missing)}", path=bundle_dir)
    large = [
        str(p.relative_to(bundle_dir))
        for p in bundle_dir.rglob("*")
        if p.is_file() and p.stat().st_size > MAX_REPO_FILE_BYTES
    ]
    if large and not (bundle_dir / "large_files.yml").is_file():
        raise BundleError(
            f"files over 25 MB ({', '.join(large)}) need a large_files.yml entry (MONAI model-zoo rule)",
            path=bundle_dir,
        )


def check_metadata(bundle_dir: Path, online_schema: bool = False) -> dict:
    """Validate ``configs/metadata.json`` with ``monai.bundle.verify_metadata`` and radmi's own checks.

    radmi's checks: the output ``channel_def`` names the 14 CheXpert findings in order, the input is one channel
    with value range [0, 1] and modality "xray".
    """
    from monai.bundle import verify_metadata

    from radmi.data.labels import CHEXPERT_LABELS

    meta_file = bundle_dir / "configs" / "metadata.json"
    try:
        metadata = json.loads(meta_file.read_text())
    except json.JSONDecodeError as err:
        raise BundleError(f"metadata.json is not valid JSON ({err})", path=meta_file) from err
    with tempfile.TemporaryDirectory() as tmp:
        schema_copy = Path(tmp) / "schema.json"
        if not online_schema:
            # verify_metadata uses an existing schema file as it is: nothing is downloaded
            shutil.copyfile(LOCAL_SCHEMA, schema_copy)
        try:
            verify_metadata(meta_file=str(meta_file), filepath=str(schema_copy))
        except ImportError as err:
            raise BundleError(
                f"metadata check needs the package 'jsonschema' ({err}): pip install jsonschema"
            ) from err
        except ValueError as err:
            raise BundleError(f"metadata does not follow the bundle schema: {err}", path=meta_file) from err
    fmt = metadata["network_data_format"]
    image, pred = fmt["inputs"]["image"], fmt["outputs"]["pred"]
    problems = []
    if image.get("num_channels") != 1:
        problems.append("input image must have 1 channel")
    if list(image.get("value_range", [])) != [0, 1]:
        problems.append("input value_range must be [0, 1]")
    if str(image.get("modality", "")).lower() != "xray":
        problems.append("input modality must be 'xray'")
    names = [pred["channel_def"].get(str(i)) for i in range(len(pred["channel_def"]))]
    if pred.get("num_channels") != len(CHEXPERT_LABELS) or names != list(CHEXPERT_LABELS):
        problems.append(f"output channel_def must name the {len(CHEXPERT_LABELS)} CheXpert findings in order")
    if problems:
        raise BundleError("; ".join(problems), path=meta_file)
    return metadata


def _input_shape(metadata: dict) -> list[int]:
    spatial = metadata["network_data_format"]["inputs"]["image"]["spatial_shape"]
    # "*" means any size: use a size every backbone stage can downsample
    return [1, 1, *[int(s) if str(s).isdigit() else 224 for s in spatial]]


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def load_weights(bundle_dir: Path, device: str = "cpu") -> dict:
    """``models/model.pt`` loaded with ``torch.load(weights_only=True)``: tensors only, no code.

    Raises:
        BundleError: the file is not a plain state dict (e.g. a pickle payload that weights-only loading refuses).
    """
    weights = bundle_dir / "models" / "model.pt"
    try:
        state = torch.load(weights, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise BundleError(
            f"models/model.pt is not a plain weights file (weights-only loading refused it: {_first_line(err)})",
            path=weights,
        ) from err
    if not isinstance(state, dict):
        raise BundleError(f"models/model.pt holds a {type(state).__name__}, not a state dict", path=weights)
    return state


def load_network(bundle_dir: Path, device: str = "cpu") -> torch.nn.Module:
    """``network_def`` of ``configs/inference.json`` with ``models/model.pt`` loaded strictly (weights_only).

    This evaluates ``inference.json`` (MONAI config code): call it on a trusted bundle only (:mod:`radmi.trust`).
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle_dir / "configs" / "inference.json"))
    parser["bundle_root"] = str(bundle_dir)
    state = load_weights(bundle_dir, device)
    network = parser.get_parsed_content("network_def")
    weights = bundle_dir / "models" / "model.pt"
    try:
        network.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, TypeError) as err:
        raise BundleError(f"models/model.pt does not fit network_def: {err}", path=weights) from err
    return network.to(device).eval()


def check_net_in_out(bundle_dir: Path) -> None:
    """``monai.bundle.verify_net_in_out`` on ``network_def``, on the CPU."""
    from monai.bundle import verify_net_in_out

    try:
        verify_net_in_out(
            net_id="network_def",
            meta_file=str(bundle_dir / "configs" / "metadata.json"),
            config_file=str(bundle_dir / "configs" / "inference.json"),
            device="cpu",
            any=224,
            bundle_root=str(bundle_dir),
        )
    except (ValueError, KeyError, RuntimeError) as err:
        raise BundleError(
            f"network input/output does not match the metadata: {err}", path=bundle_dir
        ) from err


def check_torchscript(bundle_dir: Path, metadata: dict, keep: bool = False) -> Path | None:
    """Export to TorchScript with ``monai.bundle.ckpt_export`` and compare its outputs with the eager network.

    Args:
        keep: write ``models/model.ts`` into the bundle; otherwise the export goes to a temporary folder.

    Returns:
        the kept ``model.ts`` path, or None.
    """
    from monai.bundle import ckpt_export

    shape = _input_shape(metadata)
    with tempfile.TemporaryDirectory() as tmp:
        target = bundle_dir / "models" / "model.ts" if keep else Path(tmp) / "model.ts"
        try:
            ckpt_export(
                net_id="network_def",
                filepath=str(target),
                ckpt_file=str(bundle_dir / "models" / "model.pt"),
                meta_file=str(bundle_dir / "configs" / "metadata.json"),
                config_file=str(bundle_dir / "configs" / "inference.json"),
                use_trace=True,
                input_shape=shape,
                bundle_root=str(bundle_dir),
            )
            scripted = torch.jit.load(str(target), map_location="cpu").eval()
        except Exception as err:  # tracing raises many kinds of error; all mean "cannot be exported"
            raise BundleError(
                f"TorchScript export failed: {type(err).__name__}: {err}", path=bundle_dir
            ) from err
        eager = load_network(bundle_dir)
        sample = torch.Generator().manual_seed(0)
        x = torch.rand(shape, generator=sample)
        with torch.no_grad():
            expected, got = eager(x), scripted(x)
        if not torch.allclose(expected, got, atol=TORCHSCRIPT_ATOL):
            diff = (expected - got).abs().max().item()
            raise BundleError(
                f"TorchScript output differs from the eager network by {diff:.3g}", path=bundle_dir
            )
    return target if keep else None


def verify_bundle_dir(
    bundle_dir: str | Path,
    *,
    online_schema: bool = False,
    keep_torchscript: bool = False,
    trust: bool = False,
) -> VerifyReport:
    """Run every check on an unpacked bundle folder; raise :class:`BundleError` on the first failure.

    The checks that read files as data run first (files, metadata, weights-only loading of ``model.pt``). The
    network checks evaluate ``configs/inference.json``, which is code: they run only when the folder is trusted
    (:func:`radmi.trust.is_trusted`) or ``trust`` is True, else a :class:`BundleError` says why.
    """
    root = Path(bundle_dir)
    report = VerifyReport(bundle_dir=root)
    check_files(root)
    report.passed("required files present, none over 25 MB without large_files.yml")
    metadata = check_metadata(root, online_schema=online_schema)
    report.passed("metadata.json follows the bundle schema; 1-channel [0, 1] xray input; 14 named findings")
    load_weights(root)
    report.passed("models/model.pt loads with weights_only (tensors only, no code)")
    require_trusted(root, trust=trust)
    load_network(root)
    report.passed("models/model.pt loads into network_def (strict, weights_only)")
    check_net_in_out(root)
    report.passed("monai.bundle.verify_net_in_out: output channels and dtype match the metadata")
    check_torchscript(root, metadata, keep=keep_torchscript)
    report.passed("monai.bundle.ckpt_export: TorchScript export matches the eager network")
    return report


def expected_sha256(
    zip_path: str | Path, sha256: str | None = None, sha256_file: str | Path | None = None
) -> str | None:
    """The hash a zip must have: ``sha256`` (bare or a ``.sha256`` line), else the content of ``sha256_file``,
    else the ``<zip>.sha256`` file beside the zip when there is one, else None (nothing to compare with)."""
    zip_path = Path(zip_path)
    if sha256 and sha256_file:
        raise BundleError("give the SHA256 either as --sha256 or as --sha256-file, not both")
    if sha256:
        return parse_sha256(sha256, zip_path.name)
    if sha256_file:
        return read_sha256_file(sha256_file, zip_path.name)
    sidecar = zip_path.with_name(zip_path.name + ".sha256")
    return read_sha256_file(sidecar, zip_path.name) if sidecar.is_file() else None


@dataclass
class UnpackedBundle:
    """A bundle zip unpacked by :func:`unpacked_bundle`: its root folder and what was checked."""

    root: Path
    sha256: str
    sha256_checked: bool
    #: the hash was given in this call (``sha256``/``sha256_file``), not only read from a file beside the zip:
    #: what makes the unpacked configs trusted (:mod:`radmi.trust`)
    sha256_given: bool = False

    @property
    def trusted(self) -> bool:
        """The configs inside may be evaluated: the hash was given in this call, or the zip is in the trust file."""
        return self.sha256_given or self.sha256 in trusted_hashes()


@contextmanager
def unpacked_bundle(
    zip_path: str | Path,
    sha256: str | None = None,
    sha256_file: str | Path | None = None,
    *,
    dir: str | Path | None = None,
    max_bytes: int | None = None,
) -> Iterator[UnpackedBundle]:
    """Check a bundle zip's SHA256 (when one is known, see :func:`expected_sha256`), then unpack it into a
    temporary folder that is removed on exit.

    The hash is compared before anything in the zip is read; no member may land outside the temporary folder
    (zip-slip). The yielded ``root`` is the bundle folder inside (the zip's single top folder with
    ``configs/metadata.json``).

    Raises:
        BundleError: a hash mismatch, a file that is not a zip, a member escaping the folder, members adding up
            to more than ``max_bytes`` (default :data:`MAX_EXTRACT_BYTES`), or no bundle inside.
    """
    zip_path = Path(zip_path)
    if not zip_path.is_file():
        raise BundleError("no such bundle zip", path=zip_path)
    expected = expected_sha256(zip_path, sha256, sha256_file)
    actual = check_sha256(zip_path, expected) if expected else file_sha256(zip_path)
    if not zipfile.is_zipfile(zip_path):
        raise BundleError("not a zip file", path=zip_path)
    with tempfile.TemporaryDirectory(prefix="radmi-bundle-", dir=dir) as tmp:
        try:
            _safe_extract(zip_path, Path(tmp), max_bytes)
        except (zipfile.BadZipFile, OSError) as err:
            raise BundleError(f"cannot unpack the zip: {err}", path=zip_path) from err
        yield UnpackedBundle(
            root=_bundle_root_in(Path(tmp)),
            sha256=actual,
            sha256_checked=expected is not None,
            sha256_given=bool(sha256 or sha256_file),
        )


def verify_bundle(
    path: str | Path,
    sha256: str | None = None,
    *,
    sha256_file: str | Path | None = None,
    online_schema: bool = False,
    trust: bool = False,
) -> VerifyReport:
    """Verify a bundle folder or zip.

    For a zip, the expected hash is ``sha256`` if given (a bare hash or the ``.sha256`` file's
    ``<hash>  <name>`` line), else the content of ``sha256_file``, else the ``<zip>.sha256`` file beside it if
    present; a mismatch raises :class:`BundleError` before anything in the zip is read. A folder has no hash:
    passing a SHA256 for a folder is an error.

    The network checks evaluate the bundle's ``configs/inference.json`` (MONAI config code). They run only for a
    trusted bundle: a zip whose hash was given in this call (``sha256``/``sha256_file``; a ``.sha256`` file
    beside the zip proves only that the download is complete), a zip or folder listed in the trust file
    (``radmi bundle trust``, or written by radmi on this machine), or ``trust=True``. Otherwise a
    :class:`BundleError` says the bundle is not trusted, after the data-only checks. A zip that passes with a
    given hash is added to the trust file with its configs (so the same bundle's unpacked folder is trusted).
    """
    path = Path(path)
    if not path.exists():
        raise BundleError("no such bundle folder or zip", path=path)
    if path.is_dir():
        if sha256 or sha256_file:
            raise BundleError("a SHA256 applies to the bundle zip, not to an unpacked folder", path=path)
        return verify_bundle_dir(path, online_schema=online_schema, trust=trust)
    with unpacked_bundle(path, sha256, sha256_file) as unpacked:
        try:
            report = verify_bundle_dir(
                unpacked.root, online_schema=online_schema, trust=trust or unpacked.trusted
            )
        except BundleError as err:
            if err.path is not None and Path(err.path) == unpacked.root:  # name the zip, not the temporary folder
                raise BundleError(err.reason.replace(str(unpacked.root), str(path)), path=path) from err
            raise
        if unpacked.sha256_given:
            # the user's hash vouches for the zip: list it and its configs, so that the folder MONAI's downloader
            # unpacked from the same zip (the same config bytes) is trusted by `radmi predict` too
            from radmi.trust import record_trusted

            record_trusted([path, unpacked.root])
    report.bundle_dir = path
    report.sha256 = unpacked.sha256
    if unpacked.sha256_checked:
        report.checks.insert(0, "SHA256 matches")
    return report
