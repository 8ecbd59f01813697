"""End-to-end checks of the training scripts on a tiny model and the tiny dataset (seconds each)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F

from tokenizer import get_tokenizer, THINK, END_THINK, END
from batches import sft_batch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_MODEL = ["--n_layer=2", "--n_head=2", "--n_embd=32", "--batch_size=8", "--block_size=96",
              "--eval_iters=2", "--log_interval=1", "--device=cpu", "--dtype=float32"]


def run(script, *args, check=True):
    out = subprocess.run([sys.executable, os.path.join(ROOT, script), *args], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    if check and out.returncode != 0:
        raise AssertionError(out.stdout + out.stderr)
    return out


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    run("generate_pairs.py", "config/data_tiny.py", f"--out_root={root}")
    return str(root / "tiny")


def eval_rows(out_dir):
    rows = [json.loads(line) for line in open(os.path.join(out_dir, "log.jsonl"))]
    return [r for r in rows if r["split"] == "eval"]


def test_pretraining_lowers_the_loss_and_writes_a_checkpoint(data_dir, tmp_path):
    out = tmp_path / "pre"
    run("train_pretrain.py", f"--data_dir={data_dir}", f"--out_dir={out}", "--max_iters=40", "--eval_interval=20",
        "--learning_rate=1e-2", "--warmup_iters=5", *TINY_MODEL)
    evals = eval_rows(out)
    assert [r["iter"] for r in evals] == [0, 20, 40]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 1.0
    ckpt = torch.load(out / "ckpt.pt", weights_only=True)
    assert ckpt["iter_num"] == 40 and ckpt["tokenizer"] == "math" and not os.path.exists(f"{out}/ckpt.pt.tmp")


def test_resume_after_sigkill_matches_an_uninterrupted_run(data_dir, tmp_path):
    args = [f"--data_dir={data_dir}", "--max_iters=60", "--eval_interval=10", "--warmup_iters=5", *TINY_MODEL]
    run("train_pretrain.py", f"--out_dir={tmp_path / 'full'}", *args)

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "train_pretrain.py", f"--out_dir={killed}", *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (killed / "ckpt.pt").exists():
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (killed / "ckpt.pt").exists()
    stopped_at = torch.load(killed / "ckpt.pt", weights_only=True)["iter_num"]
    assert stopped_at < 60, "the run finished before it could be killed"
    run("train_pretrain.py", f"--out_dir={killed}", "--init_from=resume", *args)

    full, resumed = eval_rows(tmp_path / "full"), eval_rows(killed)
    assert [r["iter"] for r in resumed] == [r["iter"] for r in full]  # log.jsonl has no duplicated steps
    # batches depend only on (seed, iteration), so the resumed run retraces the uninterrupted one
    assert resumed[-1]["val_loss"] == pytest.approx(full[-1]["val_loss"], abs=1e-4)


def test_ddp_with_two_processes_matches_one_process_with_accumulation(data_dir, tmp_path):
    args = [f"--data_dir={data_dir}", "--max_iters=10", "--eval_interval=5", "--gradient_accumulation_steps=2",
            "--learning_rate=1e-2", "--warmup_iters=2",
            *TINY_MODEL]
    run("train_pretrain.py", f"--out_dir={tmp_path / 'single'}", *args)
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "train_pretrain.py", f"--out_dir={tmp_path / 'ddp'}", *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    single, ddp = eval_rows(tmp_path / "single"), eval_rows(tmp_path / "ddp")
    # rank r's micro-batch is the single process's micro-batch r, so the curves agree up to the order of
    # floating-point sums in the all-reduce
    assert [r["iter"] for r in ddp] == [r["iter"] for r in single] == [0, 5, 10]
    for a, b in zip(ddp, single):
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-3)
    assert ddp[-1]["val_loss"] < ddp[0]["val_loss"] - 0.5


def test_sft_batch_scores_only_completion_tokens():
    tok = get_tokenizer()
    completion = f"{THINK}1+2+0=3{END_THINK}3{END}"
    examples = [{"prompt": "1+2=?", "completion": completion}, {"prompt": "10+20=?", "completion": f"30{END}"}]
    x, y = sft_batch(examples, [0, 1], tok, block_size=64, device="cpu")
    prompt_len = len(tok.encode("1+2=?"))
    # row 0: targets before the last prompt position are ignored; then exactly the completion, shifted
    assert (y[0, :prompt_len - 1] == -1).all()
    assert tok.decode(y[0, prompt_len - 1:].tolist()) == completion
    # row 1 is shorter: its padding is ignored too
    row1 = y[1][y[1] != -1].tolist()
    assert tok.decode(row1) == f"30{END}" and (y[1, 9:] == -1).all()
    # a hand-checkable loss: uniform logits give ln(vocab) on every scored token and nothing elsewhere
    logits = torch.zeros(2, x.size(1), tok.vocab_size)
    loss = F.cross_entropy(logits.transpose(1, 2), y, ignore_index=-1)
    assert loss.item() == pytest.approx(torch.log(torch.tensor(float(tok.vocab_size))).item())


def test_sft_then_its_checkpoint_resumes(data_dir, tmp_path):
    pre = tmp_path / "pre"
    run("train_pretrain.py", f"--data_dir={data_dir}", f"--out_dir={pre}", "--max_iters=20", "--eval_interval=20",
        *TINY_MODEL)
    sft_args = [f"--data_dir={data_dir}", f"--out_dir={tmp_path / 'sft'}", "--eval_interval=10",
                "--n_eval_problems=14", "--max_new_tokens=40", "--batch_size=8", "--log_interval=5",
                "--device=cpu", "--dtype=float32"]
    run("train_sft.py", f"--init_from={pre / 'ckpt.pt'}", "--max_iters=10", *sft_args)
    run("train_sft.py", "--init_from=resume", "--max_iters=20", *sft_args)
    evals = eval_rows(tmp_path / "sft")
    assert [r["iter"] for r in evals] == [0, 10, 20]
    assert set(evals[-1]["accuracy"]) >= {"overall", "a_plus_b_q"}
    assert torch.load(tmp_path / "sft" / "ckpt.pt", weights_only=True)["iter_num"] == 20


def test_bad_inputs_are_one_line_errors(data_dir, tmp_path):
    out = run("train_sft.py", f"--data_dir={data_dir}", f"--init_from={tmp_path / 'missing.pt'}", check=False)
    assert out.returncode == 1 and out.stderr.strip().startswith("checkpoint not found")
    out = run("train_pretrain.py", "--data_dir=nowhere", check=False)
    assert out.returncode == 1 and "meta.json not found" in out.stderr and "Traceback" not in out.stderr
    out = run("train_pretrain.py", "--max_iter=5", check=False)
    assert out.returncode == 1 and out.stderr.startswith("config error: unknown key 'max_iter'")
