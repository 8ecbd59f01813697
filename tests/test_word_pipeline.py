"""Word problems through the pipeline's scripts: generate_pairs family='words', eval.py on stories and on
GSM8K (with the calculator), sample.py on a word-problem checkpoint."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import eval as ev
import gsm8k
from common import checkpoint_payload, save_checkpoint
from model import GPT, GPTConfig
from tokenizer import get_tokenizer

ROOT = Path(__file__).resolve().parents[1]
TOK = get_tokenizer("math")


def read_jsonl(path):
    return [json.loads(line) for line in open(path)]


@pytest.fixture(scope="module")
def words_data(tmp_path_factory):
    out_root = tmp_path_factory.mktemp("data")
    run = subprocess.run([sys.executable, "generate_pairs.py", "config/data_words.py", f"--out_root={out_root}",
                          "--tokenizer=math", "--n_stories=200", "--n_val_per_type=20", "--n_test_per_type=30"],
                         cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return out_root / "words"


@pytest.fixture(scope="module")
def words_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=512, vocab_size=TOK.vocab_size, n_layer=1, n_head=2, n_embd=16, pos="rope"))
    path = tmp_path_factory.mktemp("ckpt") / "ckpt.pt"
    save_checkpoint(str(path), **checkpoint_payload(model, torch.optim.AdamW(model.parameters()), {}, 0,
                                                    {"tokenizer": "math", "family": "words"}))
    return str(path)


def test_word_data_files_and_held_out_test(words_data):
    meta = json.loads((words_data / "meta.json").read_text())
    assert meta["family"] == "words" and meta["box"] is None
    assert meta["counts"] == {"train": {"story": 200}, "val": {"story": 20}, "test": {"story": 30}}
    train, val, test = (read_jsonl(words_data / f) for f in ("sft_train.jsonl", "sft_val.jsonl", "test.jsonl"))
    assert not {r["Q"] for r in train} & ({r["Q"] for r in val} | {r["Q"] for r in test})
    for row in train + test:
        assert row["prompt"] == row["Q"] == gsm8k.prompt(row["Q"][len("Question: "):-len("\nAnswer:")])
        assert row["completion"].endswith(f"\n#### {row['A']}<|end|>") and row["type"] == "story"
    assert (words_data / "train.bin").stat().st_size == 2 * meta["tokens"]["train"]



def test_the_pretraining_stream_is_the_training_stories(words_data):
    stream = TOK.decode(np.fromfile(words_data / "train.bin", dtype=np.uint16).tolist())
    documents = stream.split("<|endoftext|>")[:-1]
    assert documents == [r["prompt"] + r["completion"] for r in read_jsonl(words_data / "sft_train.jsonl")]

def test_eval_on_stories_with_the_calculator(words_data, words_ckpt, tmp_path, monkeypatch):
    for key, value in vars(ev).items():   # eval.main() sets its config globals: restored after this test
        if not key.startswith("_") and isinstance(value, (int, float, bool, str)):
            monkeypatch.setattr(ev, key, value)
    monkeypatch.setattr(sys, "argv", ["eval.py", "--device=cpu", "--dtype=float32", f"--data_dir={words_data}",
                                      f"--ckpt={words_ckpt}", "--max_new_tokens=8", "--calculator=exact",
                                      "--source=test", "--n_per_type=0", "--num_samples=0",
                                      f"--out_dir={tmp_path}"])
    ev.main()
    results = json.loads((tmp_path / "results.json").read_text())
    metrics = results["checkpoints"][0]["metrics"]
    assert list(metrics) == ["story", "overall"] and metrics["story"]["n"] == 30
    assert results["checkpoints"][0]["by_length"] == {"overall": {}}   # a story has no operand length
    assert "By length" not in (tmp_path / "results.md").read_text()


def test_gsm8k_source_is_the_test_split_with_its_shots():
    problems = ev.load_problems("gsm8k", "unused", n_per_type=0)
    test, train = gsm8k.load("test"), gsm8k.load("train")
    assert len(problems) == len(test) == 1319 and {p.type for p in problems} == {"gsm8k"}
    shots = gsm8k.default_shots(train, 2)
    assert problems[0].prompt == gsm8k.few_shot_prompt(test[0].question, shots)
    assert problems[0].answer == test[0].answer


def test_word_format_is_the_answer_line():
    story = ev.Problem("story", "Question: ...\nAnswer:", 12)
    assert ev.format_ok(story, " Mia has 7+5 = <<7+5=12>>12 apples.\n#### 12<|end|>")
    assert not ev.format_ok(story, " Mia has 12 apples.<|end|>")
    assert gsm8k.is_correct(" #### 12<|end|>\n\nQuestion: Tom has 99", 12)   # a few-shot model's runaway is not graded


def test_sample_frames_a_word_problem_as_it_trained(words_ckpt):
    run = subprocess.run([sys.executable, "sample.py", f"--ckpt={words_ckpt}", "--device=cpu", "--max_new_tokens=4",
                          "--prompt=Mia has 12 apples. She buys 5 more. How many apples does Mia have now?"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("Question: Mia has 12 apples.")
    assert "a word problem, not checked" in run.stdout and "unexpected character" not in run.stdout
