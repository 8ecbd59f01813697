"""
What GRPO practises: the task mix, as weights over (task type, digit-count cell) pairs, e.g.
("a_minus_b_q", (3, 3)) for 3-digit minus 3-digit problems, and the problems drawn from it. The mix is
configured per type, or measured:
- at the edge (practice='edge'): problems a few digits longer than the data's box, each (type, length)
  weighted by how often a group of samples would have rewards that differ, which is GRPO's only signal:
  nothing for what the model always solves or never does, most where it is right about half the time. The
  edge is measured again as training goes, so practice moves outward as the model learns. The box's own
  longest lengths can be measured and weighed alike (train_grpo.py's box_lengths): its weak cells get practice;
- in the box (practice='box'): the start checkpoint's errors on the validation split, cell by cell, since its
  mistakes cluster in a few cells (x+b=c fails when c gets a 4th digit).
Word problems have no digit box: they are practised from the training file (practice='file', file_problems).
"""
import os
from collections import Counter

import numpy as np
import torch

from common import read_problems
from generation import complete
from tasks import (WORD_TYPES, completion, digit_cells, is_correct, length_cells, length_problems, make_problem,
                   problem_length)


def held_out_problems(data_dir, family="arithmetic"):
    """Every problem of the evaluation splits of data_dir: never practised. Word problems (generate_pairs.py's
    family 'words' or 'gsm8k') have two of them, sft_val and test."""
    splits = ("sft_val", "test", "test_uniform", "test_length") if family == "arithmetic" else ("sft_val", "test")
    return [p for s in splits for p in read_problems(os.path.join(data_dir, f"{s}.jsonl"))]


def file_problems(data_dir, held_out):
    """practice='file': the problems of data_dir/sft_train.jsonl whose prompt is in no held-out split (the
    data's generator keeps them apart; this holds GRPO to it for any file)."""
    path = os.path.join(data_dir, "sft_train.jsonl")
    problems = [p for p in read_problems(path) if p.prompt not in held_out]
    if not problems:
        raise SystemExit(f"{path}: no problem outside the held-out splits to practise on; regenerate the data")
    return problems


def rollout_limit(tok, problem, slack, max_new_tokens):
    """A rollout's own max_new_tokens: slack tokens past the problem's reference completion (capped at
    max_new_tokens), or max_new_tokens for a word problem, which has no reference to measure."""
    if problem.type in WORD_TYPES:
        return max_new_tokens
    return min(max_new_tokens, len(tok.encode(completion(problem))) + slack)


def check_weights(weights, task_digits, data_dir):
    """{type: weight} from the config -> {(type, cell): weight}, the type's weight split evenly over its
    digit-count cells (as the data's generator draws them)."""
    unknown = [t for t in weights if t not in task_digits]
    numbers = all(type(w) in (int, float) for w in weights.values())
    if unknown or not numbers or any(w < 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
        raise SystemExit(f"task_weights {weights!r}: need weights >= 0, one > 0, for types of the data in "
                         f"{data_dir} ({', '.join(task_digits)})")
    cells = {t: [cell for cell, _ in digit_cells(t, task_digits[t])] for t, w in weights.items() if w > 0}
    return {(t, cell): float(weights[t]) / len(cells[t]) for t in cells for cell in cells[t]}


def auto_weights(problems, correct, floor):
    """{(type, cell): the cell's share of its type's problems x max(the cell's error rate, floor)}, from the
    start checkpoint's greedy answers to validation problems. A type's weights add up to its error rate,
    and each cell holds the part of it that its own errors make up: mistakes cluster in a few cells (x+b=c
    fails when c gets a 4th digit, a-b when both numbers have as many digits), so practice goes there. The
    floor keeps a little practice on what is solved, which drifts when it gets none at all. A cell with no
    validation problem gets no practice."""
    n_type = Counter(p.type for p in problems)
    n_cell = Counter((p.type, p.cell) for p in problems)
    wrong = Counter((p.type, p.cell) for p, right in zip(problems, correct) if not right)
    return {key: n / n_type[key[0]] * max(wrong[key] / n, floor) for key, n in n_cell.items()}


def informative(p, group_size):
    """The probability that a group of group_size samples, each right with probability p, has rewards that
    differ: the share of groups that give GRPO a gradient."""
    return 1 - p ** group_size - (1 - p) ** group_size


def edge_problems(box, lengths, n, held_out, rng):
    """n problems of every type and each of `lengths` (past the box, and with train_grpo.py's box_lengths its
    longest lengths), none held out: what the edge is measured on."""
    return [p for length in lengths for p in length_problems(box, length, n, rng, held_out)]


@torch.no_grad()
def measure_edge(model, tok, rt, problems, samples, max_new_tokens, seed, slack):
    """{(type, length): [success rate of each problem]} from `samples` completions at temperature 1, each cut
    slack tokens past its reference (rollout_limit): past the box a multiplying type's samples lose their
    way and would otherwise run to max_new_tokens, the longest of them holding the batch."""
    limits = [rollout_limit(tok, p, slack, max_new_tokens) for p in problems for _ in range(samples)]
    texts, _ = complete(model, tok, [p.prompt for p in problems for _ in range(samples)], rt, max_new_tokens,
                        temperature=1.0, generator=torch.Generator(rt.device).manual_seed(seed), limits=limits)
    rates = {}
    for i, p in enumerate(problems):
        right = sum(is_correct(t, p.answer) for t in texts[i * samples:(i + 1) * samples])
        rates.setdefault((p.type, problem_length(p)), []).append(right / samples)
    return rates


def edge_weights(rates, box, group_size):
    """{(type, cell): weight}: each (type, length) weighs the mean chance that a group of its problems is
    informative, split evenly over the digit-count cells of that length."""
    weights = {}
    for (task_type, length), r in rates.items():
        w = float(np.mean([informative(p, group_size) for p in r]))
        cells = length_cells(task_type, box[task_type], length)
        for cell in cells:
            weights[(task_type, cell)] = weights.get((task_type, cell), 0.0) + w / len(cells)
    return {key: w for key, w in weights.items() if w > 0}


def describe_edge(rates, group_size, longest):
    """The measured edge, a line per type: its sampled accuracy and share of informative groups per length
    (* past the box, whose longest operand has `longest` digits)."""
    lines = {}
    for (task_type, length), r in sorted(rates.items()):
        past = "*" if length > longest else ""
        share = np.mean([informative(p, group_size) for p in r])
        lines.setdefault(task_type, []).append(f"{length}{past}: {np.mean(r):.2f}/{share:.2f}")
    return "\n".join(f"  {t}  " + "  ".join(cells) for t, cells in lines.items())


def without_exhausted_cells(weights, held_out):
    """The mix less the cells whose every problem is held out (a small cell, e.g. the 100 sums of two
    1-digit numbers, when the data held out a large share of each cell): nothing there can be practised."""
    n_held_out = Counter((p.type, p.cell) for p in held_out)
    size = {(t, cell): next(digit_cells(t, tuple((d, d) for d in cell)))[1] for t, cell in weights}
    exhausted = [key for key in weights if n_held_out[key] >= size[key]]
    if len(exhausted) == len(weights):
        raise SystemExit("every problem of the task mix is held out: regenerate the data with a lower "
                         "held_out_max_share or fewer held-out problems")
    if exhausted:
        print(f"not practised, every problem held out: {', '.join(f'{t} {cell}' for t, cell in exhausted)}")
    return {key: w for key, w in weights.items() if key not in exhausted}


def describe_mix(weights):
    """The task mix, one line per type: its share and its three heaviest cells."""
    total = sum(weights.values())
    by_type = {}
    for (task_type, cell), w in weights.items():
        by_type.setdefault(task_type, []).append((w / total, "x".join(map(str, cell))))
    lines = sorted(((sum(w for w, _ in cells), t, sorted(cells, reverse=True)[:3]) for t, cells in by_type.items()),
                   reverse=True)
    return "\n".join(f"  {t} {share:.3f}: " + ", ".join(f"{c} {w:.3f}" for w, c in top) for share, t, top in lines)


def draw_problems(n, weights, held_out, rng):
    """n problems, (type, digit-count cell) drawn by weight, none with a held-out prompt."""
    keys = list(weights)
    problems = []
    for task_type, cell in rng.choices(keys, [weights[k] for k in keys], k=n):
        for _ in range(1000):
            problem = make_problem(task_type, rng, tuple((d, d) for d in cell))
            if problem.prompt not in held_out:
                problems.append(problem)
                break
        else:
            raise SystemExit(f"{task_type} with {cell}-digit operands: 1000 draws in a row were held-out prompts; "
                             "give the data more problems outside its held-out splits")
    return problems
