"""End-to-end checks of the training scripts on a tiny model and the tiny dataset (seconds each)."""
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F

from tokenizer import get_tokenizer, THINK, END_THINK, END
import numpy as np

from batches import get_batch, operand_tokens, sft_batch
from model import GPT, GPTConfig

from conftest import ROOT, TINY_MODEL


def run(script, *args, check=True):
    out = subprocess.run([sys.executable, os.path.join(ROOT, script), *args], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    if check and out.returncode != 0:
        raise AssertionError(out.stdout + out.stderr)
    return out


def main_of(script, monkeypatch, *args):
    """script's main() in this process (fast: no interpreter to start), from its defaults and args."""
    module = importlib.reload(importlib.import_module(script))
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *args])
    module.main()


def one_line_error(script, monkeypatch, *args):
    with pytest.raises(SystemExit) as e:
        main_of(script, monkeypatch, *args)
    assert "\n" not in str(e.value)
    return str(e.value)


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


def test_sft_batch_scores_only_completion_tokens():
    tok = get_tokenizer()
    completion = f"{THINK}1+2+0=3{END_THINK}3{END}"
    examples = [{"prompt": "1+2=?", "completion": completion}, {"prompt": "10+20=?", "completion": f"30{END}"}]
    x, y, _ = sft_batch(examples, [0, 1], tok, block_size=64, device="cpu")
    prompt_len = len(tok.encode("1+2=?"))
    # example 0 fills its row; example 1 (8 + 3 tokens) does not fit beside it and gets a row of its own
    assert x.shape == (2, len(tok.encode("1+2=?" + completion)) - 1)
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


def test_pretraining_batches_leave_out_the_digits_of_each_prompt():
    tok = get_tokenizer()
    docs = ["12+3=?", f"{THINK}2+3+0=5+0=5,1+0+0=1+0=1|51{END_THINK}15{END}", "7*8=?", f"56{END}"]
    ids = [i for prompt, completion in zip(docs[::2], docs[1::2])
           for i in tok.encode(prompt) + tok.encode(completion) + [tok.eot_id]]
    stream = np.array(ids, dtype=np.uint16)
    places = np.zeros((len(ids), 2), dtype=np.uint16)
    window = len(ids) - 1
    operands = operand_tokens(tok, stream, "arithmetic")
    assert operands[:2] == (tok.eot_id, tok.encode("?")[0]) and sorted(operands[2].tolist()) == tok.encode("0123456789")
    x, y, _ = get_batch(stream, places, np.array([0]), 1, window, np.random.default_rng(0), "cpu", operands)
    _, y_all, _ = get_batch(stream, places, np.array([0]), 1, window, np.random.default_rng(0), "cpu")
    assert (y_all[0] == torch.tensor(ids[1:])).all()      # without operands every next token is scored
    # by hand: document 1's targets '2+3=?' lose their digits '2' and '3', its completion (digits too) and
    # <|endoftext|> stay; document 2's prompt '7*8=?' loses '7' and '8', its bare answer '56' stays
    expected = list(ids[1:])
    first = len(tok.encode("12+3=?" + docs[1])) + 1                # where document 2 starts in ids
    for i in (1, 3, first, first + 2):                            # '2', '3' of 12+3; '7', '8' of 7*8
        expected[i - 1] = -1
    assert y[0].tolist() == expected
    # the prompt of every document ends at its '?': word stories and merged '?' have none to go by
    assert operand_tokens(tok, stream, "words") is None
    assert operand_tokens(tok, stream[stream != operands[1]], "arithmetic") is None


def test_prompt_loss_false_refuses_documents_without_a_question_mark(data_dir, tmp_path, monkeypatch):
    words_like = tmp_path / "data"
    shutil.copytree(data_dir, words_like)
    meta = json.load(open(words_like / "meta.json"))
    json.dump({**meta, "family": "words"}, open(words_like / "meta.json", "w"))
    error = one_line_error("train_pretrain", monkeypatch, f"--data_dir={words_like}", f"--out_dir={tmp_path}",
                           *TINY_MODEL)
    assert error.startswith("prompt_loss=False leaves out the operands of a prompt that ends at a '?'")
    main_of("train_pretrain", monkeypatch, f"--data_dir={words_like}", f"--out_dir={tmp_path}", *TINY_MODEL,
            "--max_iters=0", "--prompt_loss=True")
    assert torch.load(tmp_path / "ckpt.pt", weights_only=True)["iter_num"] == 0


@pytest.mark.parametrize("pos", ["learned", "rope", "coupled"])
def test_sft_batch_packs_examples_that_see_only_themselves_and_keeps_the_loss(pos):
    tok = get_tokenizer()
    long = {"prompt": "123*45=?", "completion": "<think>" + "1" * 30 + f"</think>5535{END}"}
    short = [{"prompt": f"{a}+{b}=?", "completion": f"{a + b}{END}"} for a, b in [(1, 2), (30, 40), (5, 6)]]
    examples = [long] + short
    x, y, where = sft_batch(examples, range(4), tok, block_size=64, device="cpu")
    assert x.size(0) == 2                                      # the three sums share the second row
    n = [len(tok.encode(e["prompt"] + e["completion"])) for e in short]
    mask = where["attn_mask"]
    assert not mask[1, 0, n[0], n[0] - 1] and mask[1, 0, n[0], n[0]]   # the 2nd sum does not see the 1st
    # each example's targets, positions and places are the ones it has alone, at its offset in the row
    start = 0
    for e, length in zip(short, n):
        alone_x, alone_y, alone = sft_batch([e], [0], tok, block_size=64, device="cpu")
        assert torch.equal(y[1, start:start + length - 1], alone_y[0])
        for key in ("positions", "places"):
            assert torch.equal(where[key][1, start:start + length - 1], alone[key][0])
        assert (y[1, start + length - 1:start + length] == -1).all()          # the next example's prompt
        start += length
    # the packed batch's loss is the loss of the examples one a row, whatever the positions
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=64, vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=32, pos=pos))
    packed = model(x, y, **where)[1]
    alone = [sft_batch([e], [0], tok, block_size=64, device="cpu") for e in examples]
    total = sum(model(a, b, **w)[1].item() * int((b != -1).sum()) for a, b, w in alone)
    assert packed.item() == pytest.approx(total / sum(int((b != -1).sum()) for _, b, _ in alone), abs=1e-5)


def test_sft_then_its_checkpoint_resumes(data_dir, pretrained, tmp_path):
    pre = pretrained
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
    out = run("train_sft.py", f"--data_dir={data_dir}", f"--init_from={tmp_path / 'missing.pt'}",
              f"--out_dir={tmp_path}", check=False)
    assert out.returncode == 1 and out.stderr.strip().startswith("checkpoint not found")
    out = run("train_pretrain.py", "--data_dir=nowhere", f"--out_dir={tmp_path}", check=False)
    assert out.returncode == 1 and "meta.json not found" in out.stderr and "Traceback" not in out.stderr
    out = run("train_pretrain.py", "--max_iter=5", check=False)
    assert out.returncode == 1 and out.stderr.startswith("config error: unknown key 'max_iter'")


@pytest.mark.parametrize("arg, message", [
    ("--block_size=0", "config error: block_size must be >= 1, got 0"),
    ("--gradient_accumulation_steps=0", "config error: gradient_accumulation_steps must be >= 1, got 0"),
    ("--batch_size=-1", "config error: batch_size must be >= 1, got -1"),
    ("--eval_interval=0", "config error: eval_interval must be >= 1, got 0"),
    ("--device=None", "config error (--device=None): device cannot be None; its default is 'auto'"),
    ("--window=0", "config error: window must be >= 1, got 0"),
    ("--window=32", "window=32 cuts the longest training documents (172 tokens"),
    ("--window=400", "window=400 is longer than the model's block_size 320"),
])
def test_settings_that_would_train_nonsense_are_one_line_errors(data_dir, tmp_path, monkeypatch, arg, message):
    error = one_line_error("train_pretrain", monkeypatch, f"--data_dir={data_dir}", f"--out_dir={tmp_path}",
                           *TINY_MODEL, arg)
    assert error.startswith(message) and not os.path.exists(tmp_path / "ckpt.pt")


def test_max_iters_0_writes_the_untrained_checkpoint_it_announces(data_dir, tmp_path, monkeypatch, capsys):
    main_of("train_pretrain", monkeypatch, f"--data_dir={data_dir}", f"--out_dir={tmp_path}", *TINY_MODEL,
            "--max_iters=0")
    assert f"checkpoint {tmp_path / 'ckpt.pt'}" in capsys.readouterr().out
    assert torch.load(tmp_path / "ckpt.pt", weights_only=True)["iter_num"] == 0


def test_a_fresh_run_refuses_an_out_dir_that_holds_a_checkpoint(data_dir, pretrained, tmp_path, monkeypatch):
    out = tmp_path / "pre"
    shutil.copytree(pretrained, out)
    before = {f: (out / f).read_bytes() for f in ("ckpt.pt", "log.jsonl")}
    args = (f"--data_dir={data_dir}", f"--out_dir={out}", *TINY_MODEL, "--max_iters=2", "--eval_interval=2")
    error = one_line_error("train_pretrain", monkeypatch, *args)
    assert error == (f"{out / 'ckpt.pt'} exists: --init_from=resume continues that run, --overwrite=True replaces "
                     "it, or pass another --out_dir")
    assert {f: (out / f).read_bytes() for f in before} == before            # nothing lost
    main_of("train_pretrain", monkeypatch, *args, "--overwrite=True")
    assert torch.load(out / "ckpt.pt", weights_only=True)["iter_num"] == 2


def test_resume_says_which_model_keys_it_ignores(data_dir, pretrained, tmp_path, monkeypatch, capsys):
    out = tmp_path / "pre"
    shutil.copytree(pretrained, out)
    main_of("train_pretrain", monkeypatch, f"--data_dir={data_dir}", f"--out_dir={out}", *TINY_MODEL,
            "--init_from=resume", "--max_iters=22", "--eval_interval=2", "--n_embd=64", "--n_layer=6")
    assert (f"warning: resuming {out / 'ckpt.pt'} keeps its model, so these keys are ignored: n_layer=6 (the "
            "checkpoint's: 2), n_embd=64 (the checkpoint's: 32)") in capsys.readouterr().out
    ckpt = torch.load(out / "ckpt.pt", weights_only=True)
    assert ckpt["iter_num"] == 22 and ckpt["model_args"]["n_embd"] == 32


def test_missing_or_empty_token_stream(data_dir, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(os.path.join(data_dir, "meta.json"), data)
    args = (f"--data_dir={data}", f"--out_dir={tmp_path / 'out'}", *TINY_MODEL)
    assert one_line_error("train_pretrain", monkeypatch, *args).startswith(f"{data / 'train.bin'} not found")
    (data / "train.bin").write_bytes(b"")
    assert one_line_error("train_pretrain", monkeypatch, *args) == (f"{data / 'train.bin'} is empty: regenerate the "
                                                                     "data with generate_pairs.py")


def test_sft_refuses_to_resume_another_stages_checkpoint(data_dir, pretrained, tmp_path, monkeypatch):
    shutil.copytree(pretrained, tmp_path / "sft")
    error = one_line_error("train_sft", monkeypatch, f"--data_dir={data_dir}", f"--out_dir={tmp_path / 'sft'}",
                           "--init_from=resume", "--device=cpu")
    assert error.startswith(f"{tmp_path / 'sft' / 'ckpt.pt'} was not written by train_sft.py (its stage: pretrain)")


def test_sft_from_scratch_says_how(data_dir, tmp_path, monkeypatch):
    error = one_line_error("train_sft", monkeypatch, f"--data_dir={data_dir}", f"--out_dir={tmp_path}",
                           "--init_from=scratch", "--device=cpu")
    assert "python train_pretrain.py --max_iters=0" in error


def test_sft_refuses_an_empty_train_file(data_dir, tmp_path, monkeypatch):
    # an empty file's share of each batch would be drawn from the next file's rows
    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    (data / "sft_extra.jsonl").write_text("")
    error = one_line_error("train_sft", monkeypatch, f"--data_dir={data}", f"--out_dir={tmp_path / 'sft'}",
                           "--device=cpu")
    assert error == f"{data / 'sft_extra.jsonl'} is empty"
