"""bench_peers.py times nanomath against nanochat's Engine and TRL's GRPOTrainer where they are there, and says
why it skips a peer where it is not; neither is a dependency."""
import importlib.util
import subprocess
import sys

import pytest

from conftest import ROOT

TINY = ["--n_layer=1", "--n_head=2", "--n_embd=16", "--gen_batch_sizes=2", "--gen_tokens=3", "--prompts=2",
        "--group_size=2", "--completion_tokens=3", "--repeats=1"]


def run(*flags):
    out = subprocess.run([sys.executable, "bench_peers.py", *TINY, *flags], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_without_peers_it_times_nanomath_and_says_why_it_skips_them(tmp_path):
    out = run("--trl=False", f"--nanochat_dir={tmp_path}")
    assert "| batch 2 | " in out and " | - | - |" in out            # nanomath's tokens/s, no peer column
    assert f"nanochat skipped: nanochat does not import from {tmp_path}" in out
    assert "| one step (median of 1) | " in out and "TRL skipped: --trl=False" in out


@pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="TRL is not installed (optional)")
def test_trl_grpo_step_generates_as_many_tokens_and_is_timed():
    out = run()
    assert "TRL GRPOTrainer s" in out and "'completions/mean_length': '3'" in out
    step = next(line for line in out.splitlines() if line.startswith("| one step"))
    ours, theirs, ratio = (float(x.strip().rstrip("x")) for x in step.split("|")[2:5])
    assert ours > 0 and theirs > 0 and ratio > 0
