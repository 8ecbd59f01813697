# Tests use tiny models, which are overhead-bound: one thread is as fast as two and does not fight the
# other processes of a test (DDP ranks, subprocess runs) for the 2 cores of a laptop or CI machine.
import os

os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the scripts the tests run as subprocesses

import torch  # noqa: E402

torch.set_num_threads(1)

import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_MODEL = ["--n_layer=2", "--n_head=2", "--n_embd=32", "--batch_size=8", "--block_size=320", "--window=192",
              "--eval_iters=2", "--log_interval=1", "--device=cpu", "--dtype=float32"]


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """config/data_tiny.py's data (seconds to make), shared by every test that trains."""
    root = tmp_path_factory.mktemp("data")
    subprocess.run([sys.executable, "generate_pairs.py", "config/data_tiny.py", f"--out_root={root}"], cwd=ROOT,
                   check=True, capture_output=True)
    return str(root / "tiny")


@pytest.fixture(scope="session")
def pretrained(data_dir, tmp_path_factory):
    """The out_dir of a 20-iteration pretraining run of a TINY_MODEL (RoPE, the default) on data_dir."""
    out = tmp_path_factory.mktemp("pretrain")
    subprocess.run([sys.executable, "train_pretrain.py", f"--data_dir={data_dir}", f"--out_dir={out}",
                    "--max_iters=20", "--eval_interval=20", *TINY_MODEL], cwd=ROOT, check=True, capture_output=True)
    return out
