"""
How eval.py scores a model: percentile-bootstrap CIs (a paired CI is the same bootstrap of a difference),
pass@k and maj@k from samples, teacher-forced token accuracy on packed rows, and the per-item scores summed
up per group and per length.
"""
from collections import Counter

import numpy as np
import torch

import gsm8k
from tasks import TASK_TYPES, Problem, problem_length


def bootstrap_ci(values, n_boot=1000, seed=0):
    """95% percentile-bootstrap interval of the mean of values (one per problem). All resamples are drawn
    at once: an (n_boot, n) index matrix. The paired CI of a difference is this applied to b - a."""
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)  # (n_boot,)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def pass_at_k(n, c, k):
    """Chen et al. 2021's unbiased pass@k from n samples of which c are right: 1 - C(n-c, k) / C(n, k),
    written as a product so that large n does not overflow."""
    if n - c < k:
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def majority_correct(texts, answer):
    """maj@k: is the most common extracted answer among the samples right? Votes are answers as written
    (canonical completions write plain integers); samples without one do not vote; a tie goes to the
    answer seen first."""
    answers = [gsm8k.extract_answer(t) for t in texts]
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return False
    winner = votes.most_common(1)[0][0]
    return gsm8k.is_correct(texts[answers.index(winner)], answer)


def completion_token_hits(logits, idx, completion_mask, segment, n_examples):
    """Teacher forcing on packed rows (batches.pack_rows): per example, how many completion tokens the argmax
    predicts right, and how many there are. logits (R, T, vocab) at position t predict token t+1, hence the
    shift; segment (R, T) is each token's example. Returns (n_examples,), (n_examples,)."""
    targets, mask = idx[:, 1:], completion_mask[:, 1:]           # (R, T-1)
    right = (logits[:, :-1].argmax(dim=-1) == targets)[mask]      # (completion tokens,)
    owner = segment[:, 1:][mask]                                  # a completion token's example, never a neighbour's
    hits = torch.zeros(n_examples, dtype=torch.long, device=idx.device).index_add_(0, owner, right.long())
    return hits, torch.bincount(owner, minlength=n_examples)


def group_metrics(sel, per_item, graded, seed):
    """Summary of the items selected by the boolean mask sel (lengths in tokens, rates in [0, 1])."""
    worked = per_item["worked_len"][sel]
    worked = worked[~np.isnan(worked)]
    out = {"n": int(sel.sum()), "format_rate": float(per_item["canonical"][sel].mean()),
           "completion_len": float(per_item["completion_len"][sel].mean()),
           "worked_len": float(worked.mean()) if worked.size else None}
    if graded:
        correct = per_item["correct"][sel]
        total = per_item["token_total"][sel].sum()
        out |= {"acc": float(correct.mean()), "ci": bootstrap_ci(correct, seed=seed),
                "token_acc": float(per_item["token_hits"][sel].sum() / total) if total else None}
        out |= {k: float(v[sel].mean()) for k, v in per_item.items() if k.startswith(("pass@", "maj@"))}
    return out


def length_metrics(problems, correct, seed):
    """{task type or "overall": {length: {n, acc, ci}}}: accuracy by length (tasks.problem_length) of the
    arithmetic problems (a word problem has no operand length)."""
    by = {}
    for p, right in zip(problems, correct):
        if isinstance(p, Problem) and p.type in TASK_TYPES:
            by.setdefault(p.type, {}).setdefault(problem_length(p), []).append(right)
    by["overall"] = {}
    for lengths in list(by.values())[:-1]:
        for n, v in lengths.items():
            by["overall"].setdefault(n, []).extend(v)
    return {g: {str(n): {"n": len(v), "acc": float(np.mean(v)), "ci": bootstrap_ci(v, seed=seed)}   # str: as JSON
                for n, v in sorted(lengths.items())} for g, lengths in by.items()}
