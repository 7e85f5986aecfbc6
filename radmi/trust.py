"""Which bundle and run folders radmi may run the MONAI configs of.

A MONAI config is code: a ``"$..."`` string is a Python expression evaluated by ``ConfigParser``, and a
``"_target_"`` names any callable to instantiate. Loading a downloaded bundle's ``configs/inference.json`` or a
copied run's ``config.json`` therefore runs whatever its author wrote. radmi only evaluates the configs of a
folder it trusts:

1. the bundle zip's SHA256 was compared with a hash the user gave (``--sha256`` / ``--sha256-file``) in this call;
2. the folder's config files (:func:`config_files`) or the zip are listed, by SHA256, in the local trust file
   (:func:`trust_file`). radmi adds every config it writes itself (``radmi pretrain``/``finetune`` run folders,
   ``radmi bundle export``, ``radmi demo``), and ``radmi bundle trust PATH`` adds a folder or zip by hand;
3. the folder is one of the recipes shipped with radmi (``bundles/``);
4. the user passed ``--trust`` (``trust=True`` in the Python API).

The trust file is plain text, one ``<sha256>  <path>`` line per trusted file (the path is for the reader; only
the hash counts, so a trusted config that is edited is no longer trusted). It is
``$RADMI_TRUST_FILE`` when set, else ``$XDG_CONFIG_HOME/radmi/trusted.sha256`` (``~/.config/radmi/...``).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from os import PathLike
from pathlib import Path

from radmi.errors import BundleError, ModelLoadError


def file_sha256(path: str | PathLike) -> str:
    """SHA256 of a file (:func:`radmi.data.cache_store.file_sha256`, imported here on use: it pulls NumPy, and
    the recipe runner imports this module at every command's start)."""
    from radmi.data.cache_store import file_sha256 as sha256

    return sha256(path)


__all__ = [
    "TRUST_ENV",
    "config_files",
    "is_trusted",
    "record_trusted",
    "require_trusted",
    "trust_file",
    "trust_path",
    "trusted_hashes",
]

#: Environment variable naming the trust file (tests point it into a temporary folder).
TRUST_ENV = "RADMI_TRUST_FILE"
#: Suffixes of the files MONAI's ConfigParser reads as configs.
CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
#: The config files of a run folder that radmi parses with ConfigParser.
RUN_CONFIGS = ("config.json", "models/objective.json")

#: The recipes shipped in the checkout's ``bundles/`` folder (trusted as radmi's own code).
SHIPPED_BUNDLES = ("radmi_cxr_findings", "radmi_cxr_pretrain")
_CODE = "MONAI configs are code ($ expressions, _target_)"
_HOW = "; if you trust its source, run `radmi bundle trust {path}` or pass --trust"


def trust_file() -> Path:
    """The local trust file: ``$RADMI_TRUST_FILE``, else ``$XDG_CONFIG_HOME/radmi/trusted.sha256``."""
    explicit = os.environ.get(TRUST_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "radmi" / "trusted.sha256"


def trusted_hashes() -> set[str]:
    """The SHA256 digests listed in the trust file (empty when there is none)."""
    try:
        text = trust_file().read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    digests = set()
    for line in text.splitlines():
        digest = line.strip().split(" ", 1)[0].lower()
        if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
            digests.add(digest)
    return digests


def config_files(path: str | PathLike) -> list[Path]:
    """The files of a bundle or run folder that MONAI would evaluate: ``configs/*.json|yaml|yml`` of a bundle,
    ``config.json`` and ``models/objective.json`` of a run; a single file is itself."""
    path = Path(path)
    if path.is_file():
        return [path]
    found = []
    configs = path / "configs"
    if configs.is_dir():
        found += sorted(p for p in configs.iterdir() if p.is_file() and p.suffix.lower() in CONFIG_SUFFIXES)
    found += [path / name for name in RUN_CONFIGS if (path / name).is_file()]
    return found


def _shipped(path: Path) -> bool:
    """Whether ``path`` is inside the recipes shipped with radmi (``bundles/`` of the installed checkout)."""
    from radmi.bundle.paths import BUNDLES_ROOT

    try:
        resolved = path.resolve()
    except OSError:
        return False
    return any(resolved.is_relative_to(BUNDLES_ROOT / name) for name in SHIPPED_BUNDLES)


def is_trusted(path: str | PathLike) -> bool:
    """Whether every config of ``path`` (a bundle/run folder, a config file or a bundle zip) is trusted:
    shipped with radmi, or listed by SHA256 in the trust file."""
    path = Path(path)
    if _shipped(path):
        return True
    files = config_files(path)
    if not files:
        return True  # nothing there that MONAI would evaluate
    listed = trusted_hashes()
    return bool(listed) and all(file_sha256(f) in listed for f in files)


def record_trusted(paths: Iterable[str | PathLike] | str | PathLike) -> list[str]:
    """Add files (or every config of a folder, see :func:`config_files`) to the trust file; returns their hashes.

    Called by radmi for every config it writes. Appends one line per new hash (an ``O_APPEND`` write, so
    concurrent processes do not interleave lines).
    """
    if isinstance(paths, (str, PathLike)):
        paths = [paths]
    files: list[Path] = []
    for item in paths:
        files += config_files(item)
    listed = trusted_hashes()
    lines, digests = [], []
    for f in files:
        digest = file_sha256(f)
        digests.append(digest)
        if digest not in listed:
            listed.add(digest)
            lines.append(f"{digest}  {Path(f).resolve()}\n")
    if lines:
        target = trust_file()
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "a", encoding="utf-8") as handle:
            handle.write("".join(lines))
    return digests


def trust_path(path: str | PathLike) -> list[str]:
    """``radmi bundle trust PATH``: list a bundle folder, bundle zip or run folder in the trust file."""
    path = Path(path)
    if not path.exists():
        raise BundleError("no such bundle folder, zip or run folder", path=path)
    if path.is_dir() and not config_files(path):
        raise BundleError(
            "no configs/*.json, config.json or models/objective.json here: not a bundle or run folder", path=path
        )
    return record_trusted(path)


def require_trusted(path: str | PathLike, *, trust: bool = False, what: str = "bundle") -> None:
    """Raise unless ``path``'s configs may be evaluated (``trust=True``: the user said so).

    Args:
        what: ``"bundle"`` (raises :class:`BundleError`) or ``"run"`` (raises :class:`ModelLoadError`).
    """
    if trust or is_trusted(path):
        return
    if what == "run":
        raise ModelLoadError(
            f"not trusted: {_CODE}, and this run folder was neither written by radmi on this machine nor added "
            "to the trust file" + _HOW.format(path=path),
            path=path,
        )
    raise BundleError(
        f"not trusted: {_CODE}, and this bundle's zip SHA256 was not checked (--sha256) nor is it in the trust "
        "file" + _HOW.format(path=path),
        path=path,
    )


# ---- reading an untrusted run's config without evaluating it -----------------------------------------------
#: Prefixes that make a MONAI config string something other than a literal: an expression, a reference, a macro.
_NOT_LITERAL = ("$", "@", "%")
#: ``_target_`` prefixes an untrusted ``models/objective.json`` may name (the objective classes and critics).
PLAIN_TARGETS = ("radmi.losses.",)


def is_literal(value: object) -> bool:
    """Whether a config value is plain data that ``ConfigParser`` would return as it is (no ``$``/``@``/``%``
    string, no ``_target_`` or other ``_x_`` key, at any depth)."""
    if isinstance(value, str):
        return not value.startswith(_NOT_LITERAL)
    if isinstance(value, dict):
        return all(
            not (str(k).startswith("_") and str(k).endswith("_")) and is_literal(v) for k, v in value.items()
        )
    if isinstance(value, list):
        return all(is_literal(v) for v in value)
    return True


def _is_class_under(target: object, prefixes: tuple[str, ...]) -> bool:
    """Whether ``target`` names a class *defined* in a module under ``prefixes``, as ``<module>.<Class>``.

    A prefix test alone is not enough: MONAI resolves ``_target_`` by importing the longest module prefix and
    then following attributes, so ``radmi.losses.base.torch.hub.load`` would start with ``radmi.losses.`` and
    still reach torch.
    """
    if not isinstance(target, str) or "." not in target or not target.startswith(prefixes):
        return False
    module_name, _, name = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return False
    obj = getattr(module, name, None)
    return isinstance(obj, type) and obj.__module__ == module_name


def plain_objective_reason(spec: object, targets: tuple[str, ...] = PLAIN_TARGETS) -> str | None:
    """Why a config item (``models/objective.json``, a ``network_def``) cannot be built without trusting it, or
    None when it holds only literals and ``_target_`` values under ``targets`` (what radmi itself writes)."""
    if isinstance(spec, list):
        for item in spec:
            reason = plain_objective_reason(item, targets)
            if reason:
                return reason
        return None
    if isinstance(spec, dict):
        for key, value in spec.items():
            key = str(key)
            if key == "_target_":
                if not _is_class_under(value, targets):
                    return f"_target_ {str(value)[:60]!r} is not a class defined in {', '.join(targets)}"
                continue
            if key.startswith("_") and key.endswith("_"):
                return f"key {key!r}"
            reason = plain_objective_reason(value, targets)
            if reason:
                return reason
        return None
    if isinstance(spec, str) and spec.startswith(_NOT_LITERAL):
        return f"expression {spec[:60]!r}"
    return None
