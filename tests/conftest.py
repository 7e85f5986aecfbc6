"""Shared test setup: keep torch to one thread per pytest worker (the CI machine has 2 cores)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the same one thread for commands run in-process (radmi.threads.configure_threads reads it)
os.environ.setdefault("RADMI_THREADS", "1")
# radmi lists every config it writes in a trust file (radmi.trust): keep the tests' entries out of the user's
# ~/.config/radmi, one fresh file per pytest process (subprocesses inherit it)
import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

_TRUST_DIR = tempfile.mkdtemp(prefix="radmi-trust-")
atexit.register(shutil.rmtree, _TRUST_DIR, True)
os.environ["RADMI_TRUST_FILE"] = os.path.join(_TRUST_DIR, "trusted.sha256")

import torch  # noqa: E402

torch.set_num_threads(1)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_text_model_dir(tmp_path_factory):
    """A 2-layer, 16-wide BERT saved as a local model directory (stands in for a hub download)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    directory = tmp_path_factory.mktemp("tiny_bert")
    BertModel(config).save_pretrained(directory)
    return directory
