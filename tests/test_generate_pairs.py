import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from places import stream_places
from tasks import TASK_TYPES, check_steps, completion, is_correct, problem_from_row
from tokenizer import END_THINK, EOT, THINK, get_tokenizer

ROOT = Path(__file__).resolve().parents[1]
FILES = ("train.bin", "val.bin", "train_places.bin", "val_places.bin", "sft_train.jsonl", "sft_extra.jsonl",
         "sft_val.jsonl", "pairs_train.jsonl", "pairs_val.jsonl", "pairs_seed.jsonl", "test.jsonl", "test_uniform.jsonl",
         "test_length.jsonl", "meta.json")
HELD_OUT = ("test", "test_uniform", "test_length", "sft_val")


def generate(out_root, *overrides):
    return subprocess.run([sys.executable, "generate_pairs.py", "config/data_tiny.py", f"--out_root={out_root}",
                           *overrides], cwd=ROOT, capture_output=True, text=True)


def read_jsonl(path):
    return [json.loads(line) for line in open(path)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out_root = tmp_path_factory.mktemp("data")
    run = generate(out_root, "--pair_format=seed")
    assert run.returncode == 0, run.stderr
    return out_root / "tiny"


def test_every_file_is_written(data):
    for name in FILES:
        assert (data / name).stat().st_size > 0, name


def test_held_out_prompts_never_reach_training_files(data):
    rows = [r for split in HELD_OUT for r in read_jsonl(data / f"{split}.jsonl")]
    held_out = {r["Q"] for r in rows}
    assert len(held_out) == len(rows)                       # no problem in two held-out splits
    docs = get_tokenizer("math").decode(np.fromfile(data / "train.bin", dtype=np.uint16)).split(EOT)
    assert docs[-1] == "" and len(docs) == 7 * 300 + 1
    train_prompts = {d[:d.index(THINK)] for d in docs[:-1]}
    for name in ("sft_train", "pairs_train", "pairs_seed"):
        prompts = {r["Q"] for r in read_jsonl(data / f"{name}.jsonl")}
        assert prompts == train_prompts, name
    assert not train_prompts & held_out


def test_sft_extra_problems_are_fresh_and_change_no_other_file(data, tmp_path):
    rows = read_jsonl(data / "sft_extra.jsonl")              # config/data_tiny.py: 500 of each multiplying type
    assert sorted(r["type"] for r in rows) == sorted(["a_times_b_q", "a_over_b_q", "x_times_b_eq_c_q"] * 500)
    prompts = {r["Q"] for r in rows}
    seen = {r["Q"] for split in (*HELD_OUT, "sft_train") for r in read_jsonl(data / f"{split}.jsonl")}
    assert len(prompts) == 1500 and not prompts & seen       # new problems: neither held out nor in sft_train
    assert all(r["completion"] == completion(problem_from_row(r)) for r in rows)   # the worked reference
    assert json.loads((data / "meta.json").read_text())["counts"]["sft_extra"]["a_over_b_q"] == 500
    run = generate(tmp_path, "--pair_format=seed", "--sft_extra_by_type={}")   # none: every other file the same
    assert run.returncode == 0, run.stderr
    assert not (tmp_path / "tiny" / "sft_extra.jsonl").exists()
    assert all((tmp_path / "tiny" / name).read_bytes() == (data / name).read_bytes() for name in FILES
               if name not in ("meta.json", "sft_extra.jsonl"))


def test_same_seed_same_bytes(data, tmp_path):
    before = {name: (data / name).read_bytes() for name in FILES}
    run = generate(data.parent, "--pair_format=seed")
    assert run.returncode == 0, run.stderr
    assert before == {name: (data / name).read_bytes() for name in FILES}
    other = generate(tmp_path, "--seed=7")
    assert other.returncode == 0, other.stderr
    assert (tmp_path / "tiny" / "train.bin").read_bytes() != before["train.bin"]


def test_sft_rows(data):
    for split in ("sft_train", "sft_val", "test", "test_uniform", "test_length"):
        for r in read_jsonl(data / f"{split}.jsonl"):
            p = problem_from_row(r)
            assert r["prompt"] == r["Q"] and is_correct(r["completion"], p.answer)
            assert r["completion"].startswith(THINK)


def test_pairs(data):
    kinds = set()
    for split in ("pairs_train", "pairs_val"):
        for r in read_jsonl(data / f"{split}.jsonl"):
            p = problem_from_row(r)
            assert set(r) == {"prompt", "chosen", "rejected", "Q", "A", "type", "negative"}
            assert r["rejected"] != r["chosen"] and is_correct(r["chosen"], p.answer)
            assert not is_correct(r["rejected"], p.answer), r
            if r["negative"] in ("near_miss", "corrupted_step"):
                worked = r["rejected"][len(THINK):r["rejected"].index(END_THINK)]
                assert (check_steps(p, worked) == []) == (r["negative"] == "near_miss"), r
            kinds.add(r["negative"])
    assert kinds == {"refusal", "near_miss", "wrong_operation", "corrupted_step"}


def test_seed_pairs(data):
    rows = read_jsonl(data / "pairs_seed.jsonl")
    assert len(rows) == 7 * 300
    for r in rows:
        assert set(r) == {"positive", "negative", "Q", "A", "type"}
        assert r["positive"].startswith(r["Q"] + " The answer is ") and r["negative"].startswith(r["Q"] + " ")
        answer, refusal_or_miss = int(r["A"]), r["negative"][len(r["Q"]):]   # the prompt's numbers are no answer
        assert is_correct(r["positive"], answer) and not is_correct(refusal_or_miss, answer)
    assert any("Sorry" in r["negative"] for r in rows)
    assert rows[0]["positive"].endswith(f"{rows[0]['Q'][:-2]} equals {rows[0]['A']}.") or "x" in rows[0]["Q"]


def test_meta(data):
    meta = json.loads((data / "meta.json").read_text())
    assert meta["tokenizer"] == "math" and meta["vocab_size"] == get_tokenizer("math").vocab_size
    expected = {"train": 300, "val": 50, "test": 100, "test_uniform": 100}
    assert {s: c for s, c in meta["counts"].items() if s not in ("test_length", "sft_extra")} == {
        s: dict.fromkeys(TASK_TYPES, n) for s, n in expected.items()}
    lengths = [str(n) for n in range(1, 5)]                 # 1-2 digits trained; +1, +2 (= twice 2)
    assert all(list(meta["length_counts"][t]) == lengths for t in TASK_TYPES)
    assert all(meta["length_counts"][t][n] == 20 for t in TASK_TYPES for n in lengths)
    rows = read_jsonl(data / "test_length.jsonl")
    assert sum(meta["counts"]["test_length"].values()) == len(rows)
    assert {str(r["length"]) for r in rows} == set(lengths)
    for split in ("train", "val"):
        tokens = np.fromfile(data / f"{split}.bin", dtype=np.uint16)
        assert meta["tokens"][split] == len(tokens) == len(np.fromfile(data / f"{split}_places.bin", dtype=np.uint16)) // 2
    assert meta["box"] == meta["config"]["tasks"]
    assert meta["config"]["name"] == "tiny" and meta["config"]["n_train_per_type"] == 300
    assert all(meta["max_completion_tokens"]["test_length"][t] > meta["max_completion_tokens"]["test"][t]
               for t in TASK_TYPES)


def test_places_files_hold_each_tokens_place(data):
    tok = get_tokenizer("math")
    tokens = np.fromfile(data / "train.bin", dtype=np.uint16).tolist()
    places = np.fromfile(data / "train_places.bin", dtype=np.uint16).reshape(-1, 2).tolist()
    assert places == [list(p) for p in stream_places(tok, tokens)] and max(p for p, _ in places) >= 3


def test_bare_answers(tmp_path):
    run = generate(tmp_path, "--worked=False", "--n_train_per_type=20", "--n_val_per_type=8")
    assert run.returncode == 0, run.stderr
    assert all(THINK not in r["completion"] for r in read_jsonl(tmp_path / "tiny" / "sft_train.jsonl"))
    assert all(THINK not in r["rejected"] for r in read_jsonl(tmp_path / "tiny" / "pairs_train.jsonl"))


@pytest.mark.parametrize("override, message", [
    ("--tasks={'add': ((1, 3), (1, 3))}", "tasks: unknown task type 'add'; allowed: a_plus_b_q"),
    ("--tasks={'a_plus_b_q': ((1, 3), (0, 3))}", "1 <= lo <= hi"),
    ("--tasks={'a_over_b_q': ((1, 1), (1, 1))}", "a_over_b_q with digits ((1, 1), (1, 1)) has only 18 distinct "
                                                 "problems in reach, 100 asked"),
    ("--pair_format=csv", "pair_format must be 'pairs' or 'seed'"),
    ("--corner_share=1.5", "corner_share must be in [0, 1]"),
    ("--n_val_per_type=0", "n_val_per_type must be >= 1"),
    ("--tokenizer=bert", "unknown tokenizer 'bert'"),
    ("--sft_extra_by_type={'a_mod_b_q': 5}", "sft_extra_by_type must map task types (a_plus_b_q, "),
])
def test_bad_config_is_one_line(tmp_path, override, message):
    run = generate(tmp_path, override)
    assert run.returncode == 1 and message in run.stderr and run.stderr.count("\n") == 1, run.stderr


def test_mining_nothing_is_one_line(tmp_path):
    run = generate(tmp_path, "--policy=out/none.pt", "--policy_prompts=0", "--policy_box_prompts=0")
    assert run.returncode == 1 and run.stderr.startswith("nothing to mine: policy_prompts=0"), run.stderr
    assert run.stderr.count("\n") == 1


def test_too_few_problems_left_after_held_out_ones(tmp_path):
    # 100 1+1-digit sums: 20 each to test, test_uniform, test_length (length 1) and val (held_out_max_share=0.2)
    # leave 20 for training
    run = generate(tmp_path, "--tasks={'a_plus_b_q': ((1, 1), (1, 1))}", "--n_test_per_type=20",
                   "--n_val_per_type=20", "--n_train_per_type=21")
    assert run.returncode == 1 and "found only 20 of 21 distinct problems" in run.stderr, run.stderr
