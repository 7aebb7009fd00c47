import os
import sys
import tempfile
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # tests/fake_datasets.py and main.py sit beside the package
# text-embedding cache of the test runs (also for main.py subprocesses): never the user's ~/.cache
os.environ.setdefault("PROXYCLIP_CACHE_DIR", tempfile.mkdtemp(prefix="proxyclip-test-cache-"))
TINY_CONFIG = REPO_ROOT / "configs" / "model" / "tiny_random.yaml"
VOCAB = ["sky; cloud", "person", "grass", "building; house; tower"]


@pytest.fixture(scope="session")
def tiny_segmentor():
    from proxyclip import build_segmentor

    torch.manual_seed(0)
    seg = build_segmentor(TINY_CONFIG, class_names=VOCAB, crop_size=112, stride=56, crop_batch_size=4)
    return seg.eval()
