"""Every training script under torchrun with 2 processes on gloo, with RoPE (the default): the run finishes and
writes its checkpoint, and where the batches allow it, it retraces one process with 2 accumulation steps (rank r's
micro-batch is the single process's micro-batch r). The commands are those of the scripts' docstrings, on the
tiny data."""
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT

SYSTEM = ["--device=cpu", "--dtype=float32"]


def run(*command, ddp=False):
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"] if ddp else []
    out = subprocess.run([sys.executable, *launcher, *command], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out


def eval_rows(out_dir):
    rows = [json.loads(line) for line in open(os.path.join(out_dir, "log.jsonl"))]
    return [r for r in rows if r["split"] == "eval"]


def single_and_ddp(tmp_path, script, *args):
    """The eval rows of one process with 2 accumulation steps and of 2 processes with 1 each."""
    run(script, f"--out_dir={tmp_path / 'single'}", *args, "--gradient_accumulation_steps=2", *SYSTEM)
    run(script, f"--out_dir={tmp_path / 'ddp'}", *args, "--gradient_accumulation_steps=2", *SYSTEM, ddp=True)
    return eval_rows(tmp_path / "single"), eval_rows(tmp_path / "ddp")


def test_pretraining(data_dir, tmp_path):
    single, ddp = single_and_ddp(tmp_path, "train_pretrain.py", f"--data_dir={data_dir}", "--n_layer=2", "--n_head=2",
                                 "--n_embd=32", "--block_size=320", "--window=192", "--batch_size=4", "--max_iters=10",
                                 "--eval_interval=5", "--eval_iters=2", "--learning_rate=1e-2", "--warmup_iters=2")
    # the curves agree up to the order of floating-point sums in the all-reduce
    assert [r["iter"] for r in ddp] == [r["iter"] for r in single] == [0, 5, 10]
    for a, b in zip(ddp, single):
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-3)
    assert ddp[-1]["val_loss"] < ddp[0]["val_loss"] - 0.5
    assert torch.load(tmp_path / "ddp" / "ckpt.pt", weights_only=True)["iter_num"] == 10


def test_sft(data_dir, pretrained, tmp_path):
    single, ddp = single_and_ddp(tmp_path, "train_sft.py", f"--data_dir={data_dir}", f"--init_from={pretrained}/ckpt.pt",
                                 "--batch_size=4", "--max_iters=4", "--eval_interval=2", "--n_eval_problems=7",
                                 "--max_new_tokens=8", "--warmup_iters=1", "--learning_rate=1e-3")
    assert [r["iter"] for r in ddp] == [0, 2, 4]
    for a, b in zip(ddp, single):
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-3)


def test_dpo(data_dir, pretrained, tmp_path):
    single, ddp = single_and_ddp(tmp_path, "train_dpo.py", f"--data_dir={data_dir}", f"--init_from={pretrained}/ckpt.pt",
                                 "--pairs_file=pairs_train.jsonl", "--batch_size=4", "--max_iters=4",
                                 "--eval_interval=2", "--n_val_pairs=8", "--n_eval_problems=7", "--max_new_tokens=8",
                                 "--warmup_iters=1", "--learning_rate=1e-3")
    assert [r["iter"] for r in ddp] == [0, 2, 4]
    for a, b in zip(ddp, single):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-4)


def test_grpo(data_dir, pretrained, tmp_path):
    # each rank samples its own prompts, so the run is not one process's; it must finish and write its checkpoint
    out = tmp_path / "grpo"
    run("train_grpo.py", "config/grpo_tiny.py", f"--data_dir={data_dir}", f"--init_from={pretrained}/ckpt.pt",
        f"--out_dir={out}", "--prompts_per_step=2", "--max_new_tokens=16", "--n_eval_problems=7",
        *SYSTEM, ddp=True)   # rank 0 alone writes the average (with the start checkpoint)
    assert [r["iter"] for r in eval_rows(out)] == [0, 2]
    assert torch.load(out / "ckpt.pt", weights_only=True)["iter_num"] == 2
