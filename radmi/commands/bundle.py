"""``radmi bundle export|verify|trust``: package a classification run as a MONAI bundle, check a bundle, and list
a bundle or run folder in the local trust file (MONAI configs are code; see :mod:`radmi.trust`)."""

from __future__ import annotations

import argparse

from radmi.errors import BundleError


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    export = sub.add_parser(
        "export",
        help="turn a finished classification run into a verified bundle folder + zip + SHA256",
        description="Turn a finished classification run (radmi finetune --out RUN_DIR) into a MONAI bundle "
        "folder, a zip and the zip's SHA256. The bundle is verified (metadata, network in/out, TorchScript "
        "export) before anything is written.",
    )
    export.add_argument(
        "run_dir", help="the classification run folder (models/model.pt, model.json, config.json)"
    )
    export.add_argument("--name", default="radmi_cxr_findings", help="bundle name (default: %(default)s)")
    export.add_argument(
        "--version", default="0.1.0", help="bundle version written to metadata.json (default: %(default)s)"
    )
    export.add_argument(
        "--out", required=True, help="output folder for <name>/, <name>_v<version>.zip and .sha256"
    )
    export.add_argument("--changelog", default=None, help="changelog line for this version")
    export.add_argument(
        "--image-size", type=int, default=None, help="training input size in pixels (default: from the run)"
    )
    export.add_argument(
        "--overwrite", action="store_true", help="replace an existing bundle of that name in --out"
    )
    export.add_argument(
        "--trust",
        action="store_true",
        help="export even if the run's models/model.json names code outside radmi.models",
    )
    export.add_argument(
        "--half-weights",
        action="store_true",
        help="store models/model.pt in float16 (half the size; the network still runs in float32)",
    )

    verify = sub.add_parser(
        "verify",
        help="check a bundle folder or zip (SHA256, metadata, network in/out, TorchScript)",
        description="Check a bundle folder or zip. A zip whose SHA256 differs from --sha256, from --sha256-file "
        "or (when neither is given) from the <zip>.sha256 file beside it is refused before it is unpacked. "
        "MONAI configs are code: the network checks run only for a trusted bundle (the hash given here, an entry "
        "of the trust file, or --trust).",
    )

    trust = sub.add_parser(
        "trust",
        help="list a bundle folder, bundle zip or run folder in the local trust file",
        description="MONAI configs are code ($ expressions, _target_). radmi runs the configs of a bundle or run "
        "folder only when it is trusted. This adds the SHA256 of PATH's configs (configs/*.json of a bundle, "
        "config.json and models/objective.json of a run) or of the zip to the trust file "
        "($RADMI_TRUST_FILE, else ~/.config/radmi/trusted.sha256). Editing a trusted config untrusts it.",
    )
    trust.add_argument("paths", nargs="+", metavar="PATH", help="bundle folder, bundle zip or run folder")
    verify.add_argument("bundle", help="bundle folder or zip")
    hash_source = verify.add_mutually_exclusive_group()
    hash_source.add_argument(
        "--sha256",
        default=None,
        metavar="HASH",
        help="expected SHA256 of the zip: the 64 hex digits, or the whole '<hash>  <zip name>' line of the "
        "release's .sha256 file",
    )
    hash_source.add_argument(
        "--sha256-file",
        default=None,
        metavar="FILE",
        help="the release's .sha256 file (sha256sum format) holding the expected hash",
    )
    verify.add_argument(
        "--trust",
        action="store_true",
        help="run the network checks (they evaluate configs/inference.json, which is code) even if the bundle is "
        "not trusted: no --sha256/--sha256-file given and not in the trust file",
    )
    verify.add_argument(
        "--online-schema",
        action="store_true",
        help="validate metadata.json against the schema URL it names (downloads it) instead of radmi's offline copy",
    )


def run(args: argparse.Namespace) -> int:
    if args.action == "export":
        from radmi.bundle.export import export_run

        result = export_run(
            args.run_dir,
            args.out,
            name=args.name,
            version=args.version,
            changelog=args.changelog,
            image_size=args.image_size,
            overwrite=args.overwrite,
            half_weights=args.half_weights,
            trust=args.trust,
        )
        for check in result.report.checks:
            print(f"  ok  {check}")
        print(f"bundle folder: {result.bundle_dir}")
        print(f"bundle zip:    {result.zip_path}")
        print(f"sha256:        {result.sha256}  ({result.sha256_path})")
        return 0
    if args.action == "verify":
        from radmi.bundle.verify import verify_bundle

        report = verify_bundle(
            args.bundle,
            sha256=args.sha256,
            sha256_file=args.sha256_file,
            online_schema=args.online_schema,
            trust=args.trust,
        )
        for check in report.checks:
            print(f"  ok  {check}")
        if report.sha256:
            print(f"sha256: {report.sha256}")
        print(f"bundle verified: {report.bundle_dir}")
        return 0
    if args.action == "trust":
        from radmi.trust import trust_file, trust_path

        for path in args.paths:
            digests = trust_path(path)
            print(f"trusted {path} ({len(digests)} file{'s' if len(digests) != 1 else ''})")
        print(f"trust file: {trust_file()}")
        return 0
    raise BundleError(f"unknown action {args.action}")
