"""Patient-level, deterministic train/validate/test splits and keyed-hash subject ids for hospital exports.

Two rules make a hospital manifest safe to share and stable over time:

- **Subject ids are a keyed hash of the PatientID** (HMAC-SHA256 with a secret salt the user keeps), not a
  sort order: the same patient gets the same id in every export built with the same salt, a new patient
  never renumbers the others, and nobody without the salt can test whether a given PatientID is in the data.
- **The split of a patient depends only on that patient** (a hash of the seed and the subject id mapped to
  [0, 1) and cut at the cumulative fractions), not on a shuffle of all patients: adding patients to the export
  never moves an existing patient to another split, and a patient's images are never in two splits.

>>> salt = b"keep-me-secret"
>>> subject_ids(pd.Series(["MRN001", "MRN002"]), salt).str.len().tolist()
[16, 16]
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Iterable, Sequence
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from radmi.errors import ManifestError

__all__ = [
    "DEFAULT_SALT_FILE",
    "SPLIT_NAMES",
    "assign_splits",
    "default_salt_file",
    "hash_fraction",
    "load_or_create_salt",
    "parse_fractions",
    "subject_ids",
    "unit_hash",
]

logger = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "validate", "test")
#: Where ``radmi manifest folder`` keeps the salt when no ``--salt-file`` / ``--salt`` is given
#: (``RADMI_SALT_FILE`` overrides it). Outside the data folder on purpose: the salt must not travel with it.
DEFAULT_SALT_FILE = Path("~/.config/radmi/subject-id.salt")
#: Subject ids are 16 digits starting with 1: 10**15 values, so a collision among a million patients has a
#: probability of about 5e-4 (and is detected, see ``subject_ids``).
_ID_BASE = 10**15


def default_salt_file() -> Path:
    """``$RADMI_SALT_FILE`` if set, else ``~/.config/radmi/subject-id.salt``."""
    return Path(os.environ.get("RADMI_SALT_FILE") or DEFAULT_SALT_FILE).expanduser()


def load_or_create_salt(path: str | PathLike) -> tuple[bytes, bool]:
    """The salt kept in ``path`` (its stripped text, UTF-8), creating the file with a random salt if absent.

    Returns:
        ``(salt, created)``.

    Raises:
        ManifestError: the file exists but is empty or unreadable.
    """
    path = Path(path).expanduser()
    if path.exists():
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            raise ManifestError(f"cannot read the salt file: {err}", path=path) from err
        if not text:
            raise ManifestError("the salt file is empty", path=path)
        return text.encode("utf-8"), False
    path.parent.mkdir(parents=True, exist_ok=True)
    text = secrets.token_hex(32)
    # created readable by its owner only: the salt is what keeps subject ids from being linked to patients
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    return text.encode("utf-8"), True


def subject_ids(patient_ids: pd.Series, salt: bytes) -> pd.Series:
    """16-digit subject id strings: HMAC-SHA256(salt, PatientID) reduced to ``[10**15, 2 * 10**15)``.

    Args:
        patient_ids: one PatientID per row (strings; the same patient may repeat).
        salt: the secret key.

    Raises:
        ManifestError: two different PatientIDs give the same id (astronomically rare; use another salt).
    """
    if not salt:
        raise ManifestError("the salt must not be empty")
    unique = pd.unique(patient_ids.astype(str))
    ids = {
        patient: str(_ID_BASE + int.from_bytes(hmac.new(salt, patient.encode("utf-8"), hashlib.sha256).digest()[:8], "big") % _ID_BASE)
        for patient in unique
    }
    if len(set(ids.values())) != len(ids):
        raise ManifestError("two patients got the same hashed subject id; choose another salt")
    return patient_ids.astype(str).map(ids)


def hash_fraction(keys: Iterable[str], salt: str) -> np.ndarray:
    """A number in [0, 1) per key: the first 8 bytes of SHA-256(``"<salt>:<key>"``) / 2**64.

    Deterministic across machines, Python versions and row orders (unlike ``hash()`` or a seeded shuffle), and a
    key keeps its number when other keys come or go, so a split drawn as ``number < fraction`` is stable.
    """
    return np.array(
        [
            int.from_bytes(hashlib.sha256(f"{salt}:{key}".encode()).digest()[:8], "big") / 2.0**64
            for key in keys
        ],
        dtype=np.float64,
    )


def unit_hash(keys: pd.Series, seed: int) -> np.ndarray:
    """A number in [0, 1) per key from SHA-256 of ``"radmi-split:<seed>:<key>"``: uniform, fixed for a key and seed."""
    return hash_fraction(keys.astype(str), f"radmi-split:{seed}")


def parse_fractions(text: str | Sequence[float]) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` -> ``(0.8, 0.1, 0.1)``: train, validate, test; non-negative, summing to 1.

    Raises:
        ValueError: not three numbers, a negative one, or a sum other than 1 (within 1e-6).
    """
    parts = text.split(",") if isinstance(text, str) else list(text)
    try:
        fractions = tuple(float(p) for p in parts)
    except ValueError as err:
        raise ManifestError(f"split fractions must be three numbers like 0.8,0.1,0.1, got {text!r}") from err
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ManifestError(f"split fractions must be three non-negative numbers summing to 1, got {text!r}")
    return fractions  # type: ignore[return-value]


def assign_splits(subjects: pd.Series, fractions: Sequence[float], seed: int = 0) -> pd.Series:
    """The split of every row, decided per subject: ``train`` / ``validate`` / ``test``.

    A subject's split is a function of (its id, ``seed``, ``fractions``) alone, so rows of one subject share
    it, and new subjects never move old ones. Realized fractions approach ``fractions`` as subjects grow
    (binomial noise: about ±3% at 200 subjects).

    Args:
        subjects: the subject id of each row.
        fractions: train, validate, test fractions (see :func:`parse_fractions`).
        seed: another seed gives another, equally stable, assignment.
    """
    fractions = parse_fractions(fractions)
    unique = pd.Series(pd.unique(subjects.astype(str)))
    edges = np.cumsum(fractions)[:-1]
    buckets = np.searchsorted(edges, unit_hash(unique, seed), side="right")
    by_subject = dict(zip(unique, np.asarray(SPLIT_NAMES)[buckets], strict=True))
    return subjects.astype(str).map(by_subject)
