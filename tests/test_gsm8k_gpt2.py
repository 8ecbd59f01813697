"""The GPU path of issue 15 (config/sft_gsm8k_gpt2.py, config/grpo_gsm8k_gpt2.py), offline and in seconds: SFT
on GSM8K's worked solutions from Hugging Face GPT-2 weights, then GRPO on GSM8K's training questions rewarded
by their '#### N'. A BPE tokenizer trained on a handful of vendored GSM8K rows stands in for GPT-2's (tiktoken
cannot download its ranks here), and a tiny random GPT2LMHeadModel for GPT-2's weights."""
import functools
import importlib
import json
import math
import os
import sys

import pytest
import torch

import gsm8k
from common import checkpoint_payload, read_jsonl, read_meta, read_problems, save_checkpoint
from conftest import ROOT
from model import GPT
from task_mix import file_problems, held_out_problems
from tokenizer import END
from train_grpo import reward

N_TRAIN, N_VAL, N_TEST = 12, 4, 4   # vendored rows: the last N_VAL train rows become sft_val
STAGE_ARGS = ["--device=cpu", "--dtype=float32", "--compile=False", "--max_iters=2", "--eval_interval=2",
              "--warmup_iters=0", "--n_eval_problems=2", "--max_new_tokens=16"]


def main_of(script, monkeypatch, *args, patch=None):
    """script's main() in this process, from its defaults and args (configure() overwrites a fresh module's
    globals); patch(module) runs before it."""
    module = importlib.reload(importlib.import_module(script))
    if patch:
        patch(module)
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *args])
    module.main()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """generate_pairs.py's family='gsm8k' files, in a BPE trained by train_tokenizer.py, of N_TRAIN + N_TEST rows."""
    root = tmp_path_factory.mktemp("gsm8k")
    vendor = root / "vendor"
    vendor.mkdir()
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        with open(os.path.join(ROOT, "vendor", "gsm8k", f"{split}.jsonl")) as f:
            (vendor / f"{split}.jsonl").write_text("".join(f.readlines()[:n]))
    bpe = root / "bpe.json"
    with pytest.MonkeyPatch.context() as mp:
        main_of("train_tokenizer", mp, f"--out={bpe}", f"--gsm8k_file={vendor / 'train.jsonl'}",
                f"--eval_file={vendor / 'test.jsonl'}", "--n_stories=0", "--vocab_size=400")
        # family='gsm8k' always writes all of GSM8K (7,473 + 1,319 rows; no key makes it smaller): loading the
        # handful above instead gives generate_pairs' own files, format and meta.json, in a second
        mp.setattr(gsm8k, "load", functools.partial(gsm8k.load, path=str(vendor)))
        main_of("generate_pairs", mp, "--family=gsm8k", f"--tokenizer=bpe:{bpe}", "--name=gsm8k",
                f"--out_root={root}", f"--n_val_per_type={N_VAL}")
    return root / "gsm8k"


@pytest.fixture(scope="module")
def gpt2_ckpt(data_dir, tmp_path_factory):
    """A checkpoint of GPT-2-shaped weights (learned positions, biases) loaded by GPT.from_pretrained from a tiny
    random Hugging Face GPT2LMHeadModel with the BPE's vocabulary."""
    transformers = pytest.importorskip("transformers")   # optional: only init_from="gpt2" needs it
    meta = read_meta(data_dir)
    # GPT-2's block is 1024; the longest document is enough here, and keeps train_sft's windows of the
    # pretraining stream (its forgetting check) cheap
    block = max(n for split in meta["max_document_tokens"].values() for n in split.values())
    torch.manual_seed(0)
    hf_config = transformers.GPT2Config(vocab_size=meta["vocab_size"], n_positions=block, n_embd=32, n_layer=2,
                                        n_head=2)
    model = GPT.from_pretrained(hf_model=transformers.GPT2LMHeadModel(hf_config))
    path = tmp_path_factory.mktemp("gpt2") / "ckpt.pt"
    optimizer = model.configure_optimizers(0.0, 1e-3, (0.9, 0.99), "cpu")
    save_checkpoint(str(path), **checkpoint_payload(model, optimizer, {}, 0, meta))
    return path


def logged_numbers(row):
    """Every number of a log.jsonl row, nested dicts (accuracy, val_loss) included."""
    for value in row.values():
        if isinstance(value, dict):
            yield from logged_numbers(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield value


def read_log(out_dir):
    return [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]


def test_sft_then_grpo_from_gpt2_weights(data_dir, gpt2_ckpt, tmp_path, monkeypatch):
    sft, grpo = tmp_path / "sft", tmp_path / "grpo"
    main_of("train_sft", monkeypatch, "config/sft_gsm8k_gpt2.py", f"--init_from={gpt2_ckpt}", f"--data_dir={data_dir}",
            f"--out_dir={sft}", "--batch_size=4", "--gradient_accumulation_steps=1", "--log_interval=1", *STAGE_ARGS)
    drawn = []

    def record_problems(module):   # every completion is rewarded against the problem it answers
        score = module.reward
        module.reward = lambda problem, *args: drawn.append(problem) or score(problem, *args)

    main_of("train_grpo", monkeypatch, "config/grpo_gsm8k_gpt2.py", f"--init_from={sft / 'ckpt.pt'}",
            f"--data_dir={data_dir}", f"--out_dir={grpo}", "--prompts_per_step=2", "--group_size=2",
            "--sft_batch_size=2", "--dynamic_sampling=False", *STAGE_ARGS, patch=record_problems)
    for out, stage in ((sft, "sft"), (grpo, "grpo")):
        ckpt = torch.load(out / "ckpt.pt", weights_only=True)
        assert (ckpt["stage"], ckpt["iter_num"], ckpt["model_args"]["pos"]) == (stage, 2, "learned")
        rows = read_log(out)
        assert {r["split"] for r in rows} >= {"train", "eval"}
        assert all(math.isfinite(x) for r in rows for x in logged_numbers(r)), stage
    assert set(read_log(grpo)[-1]["accuracy"]) == {"gsm8k", "overall"}
    # 2 steps x 2 prompts x 2 completions, every prompt a training question and none of sft_val or test
    assert len(drawn) == 8 and all(p.type == "gsm8k" for p in drawn)
    train = {p.prompt for p in read_problems(str(data_dir / "sft_train.jsonl"))}
    held_out = {p.prompt for s in ("sft_val", "test") for p in read_problems(str(data_dir / f"{s}.jsonl"))}
    assert {p.prompt for p in drawn} <= train and not train & held_out


def test_the_reward_reads_the_answer_after_hashes(data_dir):
    row = read_jsonl(str(data_dir / "sft_train.jsonl"))[0]   # Natalia: ... 48+24 = <<48+24=72>>72 ... #### 72
    problem = read_problems(str(data_dir / "sft_train.jsonl"))[0]
    assert row["completion"].endswith(f"\n#### {problem.answer}{END}")
    assert reward(problem, row["completion"], True) == 1.0
    wrong = row["completion"].replace(f"#### {problem.answer}", f"#### {problem.answer + 1}")
    assert str(problem.answer) in wrong and reward(problem, wrong, True) == 0.0   # the steps' 72 does not count
    # a completion that did not stop and wrote a question of its own is graded on its own part (gsm8k.own_part)
    own = row["completion"].removesuffix(END)
    assert reward(problem, own + "\n\nQuestion: How many?\nAnswer: 3\n#### 3", False) == 1.0
    assert reward(problem, "She sold some.\n\nQuestion: How many?\nAnswer: #### 72", False) == 0.0


def test_grpo_practises_only_the_training_file(data_dir):
    train = read_problems(str(data_dir / "sft_train.jsonl"))
    held_out = held_out_problems(str(data_dir), "gsm8k")   # sft_val and test: word data has no test_uniform
    assert len(held_out) == N_VAL + N_TEST
    assert file_problems(str(data_dir), frozenset(p.prompt for p in held_out)) == train
    assert file_problems(str(data_dir), frozenset([train[0].prompt])) == train[1:]
    with pytest.raises(SystemExit, match="no problem outside the held-out splits"):
        file_problems(str(data_dir), frozenset(p.prompt for p in train))


@pytest.mark.parametrize("args, message", [
    ((), r"meta.json: family 'gsm8k' has no digit box to practise at \(practice='edge'\); use --practice=file"),
    (("--practice=box",), r"family 'gsm8k' has no digit box .*\(practice='box'\); use --practice=file"),
    (("--practice=file", "--task_weights={'a_plus_b_q': 1}"), r"task_weights weighs the task generator's types, but "
                                                              r"practice='file' draws .*: drop task_weights"),
])
def test_practice_that_needs_digits_is_a_one_line_error_on_word_problems(data_dir, gpt2_ckpt, tmp_path, monkeypatch,
                                                                        args, message):
    with pytest.raises(SystemExit, match=message) as e:
        main_of("train_grpo", monkeypatch, f"--init_from={gpt2_ckpt}", f"--data_dir={data_dir}",
                f"--out_dir={tmp_path}", "--device=cpu", *args)
    assert "\n" not in str(e.value)
