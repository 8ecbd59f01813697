"""Issue 13's pieces: the edge of competence that GRPO practises at, the self-labelled data of
self-improvement, and that neither ever uses a held-out problem."""
import random

import pytest

from mining import consistent, sample_pairs, self_label_rows
from task_mix import edge_problems, edge_weights, informative, without_exhausted_cells
from tasks import completion, length_cells, parse_prompt
from tokenizer import END, END_THINK, THINK

BOX = {"a_plus_b_q": ((1, 3), (1, 3)), "a_times_b_q": ((1, 3), (1, 3))}


def test_informative_is_the_chance_that_a_group_has_rewards_that_differ():
    assert informative(0.0, 8) == informative(1.0, 8) == 0
    assert informative(0.5, 8) == pytest.approx(1 - 2 / 256)
    assert informative(0.1, 2) == pytest.approx(2 * 0.1 * 0.9)
    assert informative(0.3, 8) > informative(0.05, 8) > 0


def test_edge_weights_on_a_hand_made_table():
    rates = {("a_plus_b_q", 4): [0.5, 0.5],       # the edge: half right
             ("a_plus_b_q", 5): [0.0, 0.0],       # out of reach: no group differs
             ("a_times_b_q", 4): [1.0, 1.0],      # solved: no group differs
             ("a_times_b_q", 5): [0.0, 1.0]}      # each problem always right or always wrong: no signal either
    weights = edge_weights(rates, BOX, 8)
    cells = length_cells("a_plus_b_q", BOX["a_plus_b_q"], 4)
    assert set(weights) == {("a_plus_b_q", c) for c in cells}
    assert sum(weights.values()) == pytest.approx(1 - 2 / 256)
    assert len(set(weights.values())) == 1                        # split evenly over the length's cells


def test_the_edge_is_never_measured_or_practised_on_a_held_out_problem():
    rng = random.Random(0)
    box = {"a_plus_b_q": ((1, 1), (1, 1))}
    everything = edge_problems(box, [2], 5000, set(), rng)         # the 1,800 or so problems of length 2
    held_out = {p.prompt for p in everything[:900]}
    drawn = edge_problems(box, [2], 5000, held_out, random.Random(1))
    assert drawn and not held_out & {p.prompt for p in drawn}
    weights = edge_weights({("a_plus_b_q", 2): [0.5]}, box, 8)
    assert without_exhausted_cells(weights, [parse_prompt(p) for p in held_out]) == weights


def test_a_length_below_a_type_s_shortest_operands_has_no_problems():
    box = {"a_plus_b_q": ((2, 3), (2, 3)), "a_times_b_q": ((1, 3), (1, 3))}
    drawn = edge_problems(box, [1, 2], 5, set(), random.Random(0))
    assert {(p.type, max(p.cell)) for p in drawn} == {("a_plus_b_q", 2), ("a_times_b_q", 1), ("a_times_b_q", 2)}


def canonical(worked, answer):
    return f"{THINK}{worked}{END_THINK}{answer}{END}"


def test_consistent_checks_steps_and_read_out_without_the_true_answer():
    p = parse_prompt("345+678=?")
    assert consistent(completion(p))
    assert not consistent(canonical("5+8+0=13+0=13,4+7+1=11+1=13,3+6+1=9+1=10|3301", 1033))   # a false step
    assert not consistent(canonical("5+8+0=13+0=13,4+7+1=11+1=12,3+6+1=9+1=10|3201", 1024))   # the answer is not the run's
    wrong_but_consistent = canonical("5+8+0=13+0=13,4+7+0=11+0=11,3+6+1=9+1=10|3101", 1013)   # a dropped carry, all steps true
    assert consistent(wrong_but_consistent)                                      # ...which only the vote can catch
    assert consistent(completion(parse_prompt("808-814=?")))                    # -6: the sign from the comparison


def test_self_labels_need_a_majority_and_a_consistent_sample():
    right = completion(parse_prompt("345+678=?"))
    slip = canonical("5+8+0=13+0=13,4+7+0=11+0=11,3+6+1=9+1=10|3101", 1013)
    false_step = canonical("5+8+0=13+0=13,4+7+1=11+1=13,3+6+1=9+1=10|3301", 1033)
    problems = [parse_prompt(p) for p in ("345+678=?", "345+678=?", "345+678=?")]
    texts = ([right] * 5 + [slip] * 3                      # majority right: labelled 1023
             + [slip] * 5 + [right] * 3                    # majority wrong but consistent: labelled 1013, counted wrong
             + [false_step] * 5 + [right] * 3)             # majority answer has no consistent sample: not labelled
    rows, right_labels = self_label_rows(problems, texts, 8, 0.5)
    assert [r["A"] for r in rows] == ["1023", "1013"] and right_labels == 1
    assert rows[0]["completion"] == right and all(r["self"] for r in rows)
    rows, _ = self_label_rows(problems[:1], [right] * 3 + [slip] * 3 + [false_step] * 2, 8, 0.5)
    assert rows == []                                      # 3 of 8 agree: below the agreement


def test_sample_pairs_cut_the_first_wrong_sample_at_its_first_wrong_step():
    p = parse_prompt("345+678=?")
    row = {"prompt": p.prompt, "completion": completion(p), "A": "1023", "type": p.type}
    dropped_carry = canonical("5+8+0=13+0=13,4+7+0=11+0=11,3+6+1=9+1=10|3101", 1013)
    first_step = canonical("5+8+0=12+0=12,4+7+1=11+1=12,3+6+1=9+1=10|2201", 1022)
    right_answer_wrong_step = canonical("5+8+0=13+0=13,4+7+1=11+1=12,3+6+1=9+1=11|3201", 1023)
    group = [right_answer_wrong_step, completion(p), dropped_carry, first_step]
    pairs = sample_pairs(row, group, "step", "own")
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in pairs] == [
        ("345+678=?" + THINK + "5+8+0=13+0=13,", "4+7+1=11+1=12,", "4+7+0=11+0=11,")]   # the shared step moved
    assert pairs[0]["negative"] == "policy" and pairs[0]["Q"] == "345+678=?" and pairs[0]["A"] == "1023"
    whole = sample_pairs(row, group, "completion", "own")
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in whole] == [("345+678=?", completion(p), dropped_carry)]
    no_right = [right_answer_wrong_step, first_step]              # a right answer with a wrong step is neither side
    assert sample_pairs(row, no_right, "step", "own") == []
    assert [(r["chosen"], r["rejected"], r["negative"]) for r in sample_pairs(row, no_right, "step", "reference")] \
        == [("5+8+0=13+0=13,", "5+8+0=12+0=12,", "policy_vs_reference")]
    assert sample_pairs(row, [completion(p), right_answer_wrong_step], "step", "reference") == []   # nothing wrong


def test_mined_and_self_labelled_problems_are_never_held_out(data_dir, pretrained):
    """End to end on the tiny data, with a barely trained model: the edge pairs and the self-labelled
    problems lie past the box, and none is a prompt of a held-out split."""
    import json
    import os
    import subprocess
    import sys
    from task_mix import held_out_problems
    from tasks import problem_length
    root = os.path.dirname(data_dir)
    ckpt = os.path.join(pretrained, "ckpt.pt")
    common = [sys.executable, "generate_pairs.py", "config/data_tiny.py", f"--out_root={root}"]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for args in ([f"--policy={ckpt}", "--policy_prompts=56", "--policy_box_prompts=0", "--policy_samples=2",
                  "--policy_out=pairs_edge"],
                 [f"--policy={ckpt}", "--policy_prompts=0", "--policy_box_prompts=40", "--policy_samples=2",
                  "--policy_out=pairs_box"],
                 [f"--self_label={ckpt}", "--self_problems=8", "--self_samples=2", "--self_agreement=0.01"]):
        run = subprocess.run(common + args, cwd=repo, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
    held_out = {p.prompt for p in held_out_problems(data_dir)}
    mined = [json.loads(line) for line in open(os.path.join(data_dir, "pairs_edge_train.jsonl"))]   # policy_out
    assert os.path.exists(os.path.join(data_dir, "pairs_edge_val.jsonl"))
    assert mined and not held_out & {r["Q"] for r in mined}
    assert {problem_length(parse_prompt(r["Q"])) for r in mined} <= {3, 4}      # the tiny box is 2 digits
    in_box = [json.loads(line) for line in open(os.path.join(data_dir, "pairs_box_train.jsonl"))]
    train = {json.loads(line)["Q"] for line in open(os.path.join(data_dir, "sft_train.jsonl"))}
    assert in_box and {r["Q"] for r in in_box} <= train                        # training prompts, inside the box
    labelled = os.path.join(data_dir, "sft_self_3.jsonl")
    rows = [json.loads(line) for line in open(labelled)]
    assert not held_out & {r["Q"] for r in rows}
