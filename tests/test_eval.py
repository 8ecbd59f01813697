import json
import sys
from math import comb

import numpy as np
import pytest
import torch

import eval as ev
import scoring
from common import checkpoint_payload, save_checkpoint, setup
from generation import encode_completions, greedy_accuracy
from model import GPT, GPTConfig
from tasks import Problem
from tokenizer import END, END_THINK, THINK, get_tokenizer

TOK = get_tokenizer("math")
TINY_TASKS = {"a_plus_b_q": [[1, 1], [1, 1]], "a_times_b_q": [[1, 2], [1, 1]]}
# memorised by the trained checkpoint below; the other two rows it has never seen
MEMORISED = [("1+1=?", "2"), ("3*4=?", "12")]
TEST_ROWS = [("1+1=?", "2", "a_plus_b_q"), ("5+3=?", "8", "a_plus_b_q"),
             ("3*4=?", "12", "a_times_b_q"), ("7*8=?", "56", "a_times_b_q")]


def tiny_model(block_size=64, seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(block_size=block_size, vocab_size=TOK.vocab_size, n_layer=2, n_head=2, n_embd=32))


def save(model, path, tokenizer="math", iter_num=0):
    optimizer = torch.optim.AdamW(model.parameters())
    save_checkpoint(str(path), **checkpoint_payload(model, optimizer, {}, iter_num, {"tokenizer": tokenizer}))
    return str(path)


def memorising_model(steps=150):
    """A tiny model overfit on two answer-only completions: it answers those two and nothing else."""
    model = tiny_model()
    idx, mask, _ = encode_completions(TOK, [p for p, _ in MEMORISED], [a + END for _, a in MEMORISED], 64)
    targets = idx[:, 1:].masked_fill(~mask[:, 1:], -1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        _, loss = model(idx[:, :-1], targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def write_data(root, rows=TEST_ROWS, tokenizer="math", text=None):
    """data_dir with meta.json and test.jsonl (rows, or the raw text given)."""
    root.mkdir(parents=True, exist_ok=True)
    meta = {"tokenizer": tokenizer, "vocab_size": TOK.vocab_size, "worked": False,
            "config": {"tasks": TINY_TASKS, "n_test_per_type": 3}}
    (root / "meta.json").write_text(json.dumps(meta))
    if text is None:
        text = "".join(json.dumps({"prompt": q, "completion": a + END, "Q": q, "A": a, "type": t}) + "\n"
                       for q, a, t in rows)
    (root / "test.jsonl").write_text(text)
    return str(root)


@pytest.fixture(scope="module")
def memoriser():
    return memorising_model()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, memoriser):
    root = tmp_path_factory.mktemp("ckpts")
    return {"random": save(tiny_model(), root / "random" / "ckpt.pt"),
            "trained": save(memoriser, root / "trained" / "ckpt.pt", iter_num=150)}


@pytest.fixture
def run_eval(monkeypatch):
    """eval.main() with these command-line arguments; the module's config globals are restored after."""
    keys = [k for k, v in vars(ev).items() if not k.startswith("_") and isinstance(v, (int, float, bool, str))]
    for key in keys:
        monkeypatch.setattr(ev, key, getattr(ev, key))

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["eval.py", "--device=cpu", "--dtype=float32", *args])
        ev.main()
    return run


# ---------------------------------------------------------------- statistics

def test_pass_at_k_against_hand_computed_values():
    assert scoring.pass_at_k(5, 2, 1) == pytest.approx(0.4)        # 1 - C(3,1)/C(5,1) = 1 - 3/5
    assert scoring.pass_at_k(5, 2, 2) == pytest.approx(0.7)        # 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert scoring.pass_at_k(5, 0, 3) == 0.0
    assert scoring.pass_at_k(5, 3, 3) == 1.0                       # n - c = 2 < k: every 3-subset holds a right one
    assert scoring.pass_at_k(5, 5, 1) == 1.0


def test_pass_at_k_is_the_combinatorial_formula_without_overflow():
    for n, c, k in [(10, 3, 4), (20, 1, 5), (16, 8, 16), (7, 6, 1)]:
        assert scoring.pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k))
    assert 0.0 < scoring.pass_at_k(10_000, 3, 100) < 1.0           # C(10000, 100) overflows a float


def test_majority_vote_over_extracted_answers():
    right, wrong = f"{THINK}1+2+0=3{END_THINK}3{END}", f"4{END}"
    assert scoring.majority_correct([right, wrong, f"3{END}"], 3)
    assert not scoring.majority_correct([right, wrong, wrong], 3)
    assert not scoring.majority_correct(["no number here", "nor here"], 3)
    assert scoring.majority_correct([right, "junk", wrong], 3)        # a tie goes to the answer seen first


def test_bootstrap_ci_contains_the_mean_and_narrows_with_n():
    rng = np.random.default_rng(0)
    small, large = rng.random(100) < 0.7, rng.random(10_000) < 0.7
    lo, hi = scoring.bootstrap_ci(small)
    assert lo < small.mean() < hi
    lo_large, hi_large = scoring.bootstrap_ci(large)
    assert lo_large < large.mean() < hi_large
    assert hi_large - lo_large < (hi - lo) / 5                  # ~1/sqrt(100) narrower
    assert scoring.bootstrap_ci(small, seed=3) == scoring.bootstrap_ci(small, seed=3)


def test_bootstrap_ci_of_all_correct_is_degenerate():
    assert scoring.bootstrap_ci(np.ones(50)) == (1.0, 1.0)
    assert scoring.bootstrap_ci(np.zeros(50)) == (0.0, 0.0)


def test_token_hits_on_a_hand_made_case():
    # one row: prompt [5, 6], completion [7, 8, 9], then a pad. logits[t] predicts idx[t + 1]
    idx = torch.tensor([[5, 6, 7, 8, 9, 0]])
    completion_mask = torch.tensor([[False, False, True, True, True, False]])
    segment = torch.tensor([[0, 0, 0, 0, 0, -1]])
    predictions = [6, 7, 1, 9, 3, 4]     # position 0 (a prompt token) right but not scored; then right, wrong, right
    logits = torch.nn.functional.one_hot(torch.tensor([predictions]), 12).float()   # (1, 6, 12)
    hits, totals = scoring.completion_token_hits(logits, idx, completion_mask, segment, 1)
    assert hits.tolist() == [2] and totals.tolist() == [3]


def test_token_hits_of_packed_examples_are_counted_per_example():
    # row 0: example 0 (prompt [5], completion [7, 8]) then example 2 (prompt [6], completion [9]); row 1: example 1
    idx = torch.tensor([[5, 7, 8, 6, 9], [5, 6, 7, 8, 0]])
    completion_mask = torch.tensor([[False, True, True, False, True], [False, False, True, True, False]])
    segment = torch.tensor([[0, 0, 0, 2, 2], [1, 1, 1, 1, -1]])
    predictions = [[7, 1, 6, 9, 0], [6, 7, 8, 0, 0]]   # ex 0: right, wrong; ex 2: right; ex 1: right, right
    logits = torch.nn.functional.one_hot(torch.tensor(predictions), 12).float()     # (2, 5, 12)
    hits, totals = scoring.completion_token_hits(logits, idx, completion_mask, segment, 3)
    assert hits.tolist() == [1, 2, 1] and totals.tolist() == [2, 2, 1]


# ---------------------------------------------------------------- problems

def test_load_problems_caps_each_type(tmp_path):
    data_dir = write_data(tmp_path / "data")
    problems = ev.load_problems("test", data_dir, n_per_type=1)
    assert [p.prompt for p in problems] == ["1+1=?", "3*4=?"]
    assert len(ev.load_problems("test", data_dir)) == 4


def test_generated_problems_follow_the_data_config_and_seed(tmp_path):
    data_dir = write_data(tmp_path / "data")
    a = ev.load_problems("generated", data_dir, n_per_type=5, seed=1)
    assert sorted(p.type for p in a) == ["a_plus_b_q"] * 5 + ["a_times_b_q"] * 5
    assert a == ev.load_problems("generated", data_dir, n_per_type=5, seed=1)
    assert len(ev.load_problems("generated", data_dir, seed=1)) == 2 * 3   # the data's n_test_per_type


def test_plain_prompts_are_graded_when_they_parse(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("17+19=?\n\n72-x=34, x=?\n3 + 4 = ?\nx * 11 = 44 , x = ?\nhow are you\n7/2=?\n")
    items = ev.load_problems(str(path), str(tmp_path))
    assert items[:4] == [Problem("a_plus_b_q", "17+19=?", 36), Problem("b_minus_x_eq_c_q", "72-x=34, x=?", 38),
                         Problem("a_plus_b_q", "3+4=?", 7), Problem("x_times_b_eq_c_q", "x*11=44, x=?", 4)]
    assert items[4:] == ["how are you", "7/2=?"]        # run as written, but not graded


# ---------------------------------------------------------------- one model

def test_evaluate_checkpoint_on_a_memorising_model(memoriser):
    rt = setup("cpu", "float32", 0)
    model = memoriser
    problems = [Problem(t, q, int(a)) for q, a, t in TEST_ROWS] + ["how are you"]
    r = ev.evaluate_checkpoint(model, TOK, problems, rt, max_new_tokens=20, worked=False, n_transcripts=2)
    m = r["metrics"]
    assert r["correct"] == [True, False, True, False, None]
    assert m["a_plus_b_q"]["acc"] == 0.5 and m["a_times_b_q"]["acc"] == 0.5 and m["overall"]["acc"] == 0.5
    assert m["overall"]["n"] == 4 and m["ungraded"]["n"] == 1 and "acc" not in m["ungraded"]
    lo, hi = m["overall"]["ci"]
    assert 0.0 <= lo < 0.5 < hi <= 1.0
    assert m["overall"]["format_rate"] >= 0.5                 # the memorised answers are canonical
    assert m["overall"]["token_acc"] >= 5 / 10               # "2<|end|>" and "12<|end|>": 5 of the 10 tokens
    # the same verdicts as the accuracy the training scripts log
    assert greedy_accuracy(model, TOK, problems[:4], rt, 20)["overall"] == 0.5
    assert [t["prompt"] for t in r["transcripts"]] == ["1+1=?", "how are you"]
    first = r["transcripts"][0]
    assert first["correct"] and "".join(x["text"] for x in first["tokens"]) == first["completion"] == "2" + END
    assert all(x["logprob"] <= 0 for x in first["tokens"])


def test_batches_of_similar_length_answer_in_the_prompts_order(memoriser):
    # expected lengths put prompts of similar length in one batch (batch_size 2 here); the answers still come
    # back in the prompts' order, and the same as in file order
    rt = setup("cpu", "float32", 0)
    prompts, room = [q for q, _, _ in TEST_ROWS], [20] * len(TEST_ROWS)
    in_order = ev.complete_in_rooms(memoriser, TOK, prompts, rt, room, 2)
    by_length = ev.complete_in_rooms(memoriser, TOK, prompts, rt, room, 2, expected=[3, 1, 4, 2])
    assert by_length == in_order
    texts = by_length[0]
    assert texts[0] == "2" + END and texts[2] == "12" + END   # the two it memorised, at their prompts' places


def test_sampled_pass_at_k_and_maj_at_k(memoriser):
    rt = setup("cpu", "float32", 0)
    problems = [Problem(t, q, int(a)) for q, a, t in TEST_ROWS]
    r = ev.evaluate_checkpoint(memoriser, TOK, problems, rt, max_new_tokens=20, num_samples=4,
                               temperature=1.0, worked=False, seed=0)
    m = r["metrics"]["overall"]
    assert {"pass@1", "pass@2", "pass@4", "maj@4"} <= m.keys()
    assert 0.0 <= m["pass@1"] <= m["pass@2"] <= m["pass@4"] <= 1.0
    assert 0.0 <= m["maj@4"] <= 1.0


def test_markdown_table_formats_accuracy_and_delta():
    sft = {"name": "sft", "metrics": {"overall": {"n": 7000, "acc": 0.9731, "ci": (0.962, 0.983)}}}
    dpo = {"name": "dpo", "metrics": {"overall": {"n": 7000, "acc": 0.98, "ci": (0.97, 0.99)}}}
    results = {"checkpoints": [sft, dpo], "delta": {"overall": {"diff": 0.0069, "ci": (-0.001, 0.015)}}}
    table = ev.markdown_table(results)
    assert "| task | n | sft | dpo | delta (dpo - sft) |" in table
    assert "| overall | 7000 | 97.3 [96.2, 98.3] | 98.0 [97.0, 99.0] | +0.7 [-0.1, 1.5] |" in table


def test_paired_delta_is_the_mean_difference_on_the_same_problems():
    problems = [Problem("a_plus_b_q", f"{i}+0=?", i) for i in range(40)]
    first = {"metrics": {"a_plus_b_q": {}, "overall": {}}, "correct": [i % 2 == 0 for i in range(40)]}
    last = {"metrics": {"a_plus_b_q": {}, "overall": {}}, "correct": [True] * 40}
    delta = ev.paired_delta(first, last, problems)
    assert delta["overall"]["diff"] == 0.5
    lo, hi = delta["overall"]["ci"]
    assert 0.3 < lo < 0.5 < hi < 0.7


# ---------------------------------------------------------------- eval.py end to end

def test_two_checkpoints_side_by_side(tmp_path, checkpoints, run_eval, capsys):
    data_dir, out_dir = write_data(tmp_path / "data"), tmp_path / "eval"
    both = f"{checkpoints['random']},{checkpoints['trained']}"
    run_eval(f"--data_dir={data_dir}", f"--out_dir={out_dir}", f"--ckpt={both}", "--max_new_tokens=20",
             "--n_transcripts=2", "--show_transcripts=True")
    results = json.loads((out_dir / "results.json").read_text())
    random_r, trained = results["checkpoints"]
    assert (random_r["name"], trained["name"]) == ("random", "trained") and trained["iter_num"] == 150
    assert trained["metrics"]["overall"]["acc"] == 0.5 and trained["correct"] == [True, False, True, False]
    assert random_r["metrics"]["overall"]["acc"] == 0.0
    assert results["delta"]["overall"]["diff"] == 0.5
    for key in ("n", "acc", "ci", "format_rate", "completion_len", "worked_len", "token_acc"):
        assert key in trained["metrics"]["a_plus_b_q"]
    md = (out_dir / "results.md").read_text()
    assert "| task | n | random | trained | delta (trained - random) |" in md
    assert "| overall | 4 | 0.0 [0.0, 0.0] | 50.0 [" in md
    transcripts = [json.loads(line) for line in (out_dir / "transcripts.jsonl").read_text().splitlines()]
    assert [t["checkpoint"] for t in transcripts] == ["random", "random", "trained", "trained"]
    out = capsys.readouterr().out
    assert "[trained] 1+1=?  ->  2(50, p=" in out and md.split("\n", 2)[2] in out


def test_plain_prompts_source_end_to_end(tmp_path, checkpoints, run_eval):
    data_dir, out_dir = write_data(tmp_path / "data"), tmp_path / "eval"
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("1+1=?\n3*4=?\nwhat is 2+2\n")
    run_eval(f"--data_dir={data_dir}", f"--out_dir={out_dir}", f"--ckpt={checkpoints['trained']}",
             f"--source={prompts}", "--max_new_tokens=20")
    r = json.loads((out_dir / "results.json").read_text())["checkpoints"][0]
    assert r["metrics"]["overall"]["acc"] == 1.0 and r["metrics"]["ungraded"]["n"] == 1
    assert r["correct"] == [True, True, None]
    assert "| ungraded |" in (out_dir / "results.md").read_text()   # the column of the metrics table


def test_each_prompt_gets_the_room_its_own_length_leaves(tmp_path, run_eval, capsys):
    data_dir = write_data(tmp_path / "data")
    ckpt = save(tiny_model(block_size=32), tmp_path / "short" / "ckpt.pt")
    prompts = tmp_path / "prompts.txt"
    long_prompt = "9" * 24 + "+1=?"                       # 28 tokens: 4 left in block_size 32
    prompts.write_text(f"1+1=?\n{long_prompt}\n3*4=?\n")
    run_eval(f"--data_dir={data_dir}", f"--out_dir={tmp_path / 'eval'}", f"--ckpt={ckpt}", f"--source={prompts}",
             "--max_new_tokens=20")
    completions = json.loads((tmp_path / "eval" / "results.json").read_text())["checkpoints"][0]["completions"]
    # a random model never stops: every prompt uses the room it has, the short ones are not cut to 4
    assert [len(TOK.encode(c)) for c in completions] == [20, 4, 20]
    assert (f"note: 1 prompt(s) leave fewer than max_new_tokens=20 new tokens in block_size 32; the longest, "
            f"{long_prompt!r}, leaves 4") in capsys.readouterr().out


# ---------------------------------------------------------------- bad input: one-line errors

def test_missing_checkpoint(tmp_path, run_eval):
    with pytest.raises(SystemExit, match="checkpoint not found: .*nope.pt"):
        run_eval(f"--data_dir={write_data(tmp_path / 'data')}", f"--ckpt={tmp_path / 'nope.pt'}")


def test_checkpoint_tokenizer_differs_from_the_data(tmp_path, checkpoints, run_eval):
    data_dir = write_data(tmp_path / "data", tokenizer="gpt2")
    with pytest.raises(SystemExit, match="tokenizer mismatch: checkpoint .* uses 'math' but .*meta.json was made "
                                         "with 'gpt2'"):
        run_eval(f"--data_dir={data_dir}", f"--ckpt={checkpoints['random']}")


def test_malformed_jsonl_names_the_line(tmp_path, checkpoints, run_eval):
    good = json.dumps({"Q": "1+1=?", "A": "2", "type": "a_plus_b_q"})
    data_dir = write_data(tmp_path / "data", text=f"{good}\n{good}\n{{not json\n")
    with pytest.raises(SystemExit, match=r"test.jsonl:3: malformed JSON"):
        run_eval(f"--data_dir={data_dir}", f"--ckpt={checkpoints['random']}")


def test_empty_test_set(tmp_path, checkpoints, run_eval):
    data_dir = write_data(tmp_path / "data", text="")
    with pytest.raises(SystemExit, match="test.jsonl is empty"):
        run_eval(f"--data_dir={data_dir}", f"--ckpt={checkpoints['random']}")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(SystemExit, match="empty.txt has no prompts"):
        run_eval(f"--data_dir={data_dir}", f"--ckpt={checkpoints['random']}", f"--source={tmp_path / 'empty.txt'}")


def test_prompt_longer_than_the_block(tmp_path, run_eval):
    data_dir = write_data(tmp_path / "data")
    ckpt = save(tiny_model(block_size=16), tmp_path / "short" / "ckpt.pt")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("1+1=?\n" + "9" * 20 + "+1=?\n")
    with pytest.raises(SystemExit, match="has 24 tokens; block_size is 16"):
        run_eval(f"--data_dir={data_dir}", f"--ckpt={ckpt}", f"--source={prompts}")


def test_unknown_source(tmp_path, checkpoints, run_eval):
    with pytest.raises(SystemExit, match="source='valid': use test, test_uniform, test_length, generated, gsm8k or the path"):
        run_eval(f"--data_dir={write_data(tmp_path / 'data')}", f"--ckpt={checkpoints['random']}", "--source=valid")


def test_an_unwritable_out_dir_stops_before_any_evaluation(tmp_path, checkpoints, run_eval, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")                                  # out_dir below a file: it cannot be made, even by root
    with pytest.raises(SystemExit, match=r"out_dir '.*a_file/eval' is not writable \(.*\): pass another --out_dir"):
        run_eval(f"--data_dir={write_data(tmp_path / 'data')}", f"--out_dir={blocker / 'eval'}",
                 f"--ckpt={checkpoints['random']}")
    assert "problems in" not in capsys.readouterr().out


def test_every_checkpoint_is_loaded_before_the_first_is_evaluated(tmp_path, checkpoints, run_eval, capsys):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"")
    with pytest.raises(SystemExit, match="could not load checkpoint .*corrupt.pt: the file is empty"):
        run_eval(f"--data_dir={write_data(tmp_path / 'data')}", f"--out_dir={tmp_path / 'eval'}",
                 f"--ckpt={checkpoints['trained']},{corrupt}")
    assert "problems in" not in capsys.readouterr().out     # the first one was not evaluated in vain


def test_a_checkpoint_with_a_smaller_vocabulary(tmp_path, run_eval):
    torch.manual_seed(0)
    small = GPT(GPTConfig(block_size=64, vocab_size=100, n_layer=1, n_head=2, n_embd=16))
    ckpt = save(small, tmp_path / "small" / "ckpt.pt")
    with pytest.raises(SystemExit, match="vocabulary mismatch: checkpoint .*ckpt.pt embeds 100 token ids but "
                                         ".*meta.json has 260"):
        run_eval(f"--data_dir={write_data(tmp_path / 'data')}", f"--ckpt={ckpt}", f"--out_dir={tmp_path / 'eval'}")


def test_a_jsonl_source_is_read_as_rows(tmp_path, checkpoints, run_eval):
    data_dir = write_data(tmp_path / "data")
    mine = tmp_path / "mine.jsonl"
    mine.write_text(json.dumps({"Q": "1+1=?", "A": "2", "type": "a_plus_b_q"}) + "\n"
                    + json.dumps({"Q": "3*4=?", "A": "12", "type": "a_times_b_q"}) + "\n")
    run_eval(f"--data_dir={data_dir}", f"--out_dir={tmp_path / 'eval'}", f"--ckpt={checkpoints['trained']}",
             f"--source={mine}", "--max_new_tokens=20")
    r = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert [p["prompt"] for p in r["problems"]] == ["1+1=?", "3*4=?"] and r["checkpoints"][0]["correct"] == [True, True]
    mine.write_text(json.dumps({"Q": "1+1=?", "A": "2", "type": "a_plus_b_q"}) + "\n" + json.dumps({"Q": "1+1=?"}))
    with pytest.raises(SystemExit, match=r"mine.jsonl:2: missing key\(s\) A, type"):
        run_eval(f"--data_dir={data_dir}", f"--ckpt={checkpoints['trained']}", f"--source={mine}")


@pytest.mark.parametrize("arg, message", [("--temperature=-1", "temperature must be >= 0"),
                                          ("--top_k=-3", "top_k must be >= 0"), ("--top_p=0", "top_p must be in"),
                                          ("--out_dir=None", "out_dir cannot be None")])
def test_sampling_settings_out_of_range(tmp_path, checkpoints, run_eval, arg, message):
    with pytest.raises(SystemExit, match=message):
        run_eval(f"--data_dir={write_data(tmp_path / 'data')}", f"--ckpt={checkpoints['random']}", arg)


def test_a_number_like_out_dir_is_a_directory_name(tmp_path, checkpoints, run_eval, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_eval(f"--data_dir={write_data(tmp_path / 'data')}", f"--ckpt={checkpoints['random']}", "--out_dir=2024",
             "--max_new_tokens=4", "--n_per_type=1")
    assert (tmp_path / "2024" / "results.json").exists()
