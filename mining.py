"""
What a model's own samples become: Step-DPO pairs (generate_pairs.py --policy) and self-labelled SFT rows
(generate_pairs.py --self_label). Plain functions of samples, prompts and rows; generate_pairs.py draws the
prompts, samples them and writes the files.
"""
import re
from collections import Counter

from tasks import extract_answer, has_canonical_format, is_claim, is_correct
from tokenizer import END_THINK, THINK
from worked import is_true, split_steps


SLACK = 16   # a sample may run this many tokens past its reference: a right one follows the reference's steps


def room(tok, model, problems):
    """(each problem's own max_new_tokens, the longest of them) for sampling: its reference and a wrong answer
    SLACK tokens longer (task_mix.rollout_limit, as GRPO's rollouts), within the model's block_size."""
    from task_mix import rollout_limit          # here: task_mix imports torch, which writing data does not need
    cap = model.config.block_size - max(len(tok.encode(p.prompt)) for p in problems)
    limits = [rollout_limit(tok, p, SLACK, cap) for p in problems]
    return limits, max(limits)


def first_wrong_step(prompt, chosen, rejected):
    """Step-DPO (Lai et al. 2024): the prompt grows by the steps both completions share, and each side keeps
    only its next step. Whole completions would also push down what follows the mistake in the rejected
    one, where reading the answer off the (wrong) steps is the right thing to do: DPO on whole on-policy
    completions lowered greedy accuracy here from 97% to 87%."""
    diverge = next(i for i, (a, b) in enumerate(zip(chosen + "\0", rejected + "\0")) if a != b)
    starts = [m.end() for m in re.finditer(r"[,:;]|<think>|</think>", chosen[:diverge])]
    cut = starts[-1] if starts else 0

    def step(text):
        end = re.search(r"[,:;]|</think>|<\|end\|>", text[cut:])
        return text[cut:cut + end.end()] if end else text[cut:]
    return prompt + chosen[:cut], step(chosen), step(rejected)


def sample_pairs(row, group, cut, chosen_side):
    """The pair one prompt's samples give, as a list (empty or one): its first wrong sample, cut at the first
    wrong step (cut='step') or whole ('completion'), against the model's own right sample, which, the format
    being deterministic, is the reference completion token for token (a sample with the right answer can
    still have wrong steps: that is not the reference, and is neither side); with no right sample, against
    the reference (chosen_side='reference') or no pair ('own')."""
    own_right = row["completion"] in group
    wrong = [s for s in group if not is_correct(s, row["A"])]
    if not wrong or not (own_right or chosen_side == "reference"):
        return []
    prompt, chosen, rejected = row["prompt"], row["completion"], wrong[0]
    if cut == "step":
        prompt, chosen, rejected = first_wrong_step(prompt, chosen, rejected)
    return [{"prompt": prompt, "chosen": chosen, "rejected": rejected, "Q": row["prompt"], "A": row["A"],
             "type": row["type"], "negative": "policy" if own_right else "policy_vs_reference"}]


def consistent(text):
    """A completion checks out without knowing the true answer: every column step and comparison is a true
    statement, and the answer is the run read backwards (with the sign its comparison gives)."""
    if THINK not in text or END_THINK not in text or "|" not in text:
        return False
    worked = text[text.index(THINK) + len(THINK):text.index(END_THINK)]
    steps = [s for s in split_steps(worked) if is_claim(s)]
    run = worked[worked.rindex("|") + 1:]
    answer = extract_answer(text)
    return (bool(steps) and all(is_true(s) for s in steps) and run.isdigit() and answer is not None
            and abs(int(answer)) == int(run[::-1]))


def self_label_rows(problems, texts, samples, agreement):
    """The self-labelled rows: per problem, the answer most of its samples give (with at least `agreement` of
    them), and a sample with that answer that is consistent (every step true, the answer the run's) as the
    completion. Returns the rows and, for the report only, how many of their labels are right."""
    rows, right = [], 0
    for i, p in enumerate(problems):
        group = texts[i * samples:(i + 1) * samples]
        answers = [extract_answer(t) if has_canonical_format(t) else None for t in group]
        votes = Counter(a for a in answers if a is not None)
        if not votes:
            continue
        answer, n = votes.most_common(1)[0]
        if n < agreement * samples:
            continue
        worked = [t for t, a in zip(group, answers) if a == answer and consistent(t)]
        if worked:
            rows.append({"prompt": p.prompt, "completion": worked[0], "Q": p.prompt, "A": answer, "type": p.type,
                         "self": True})
            right += int(answer) == p.answer
    return rows, right
