"""
Generate the synthetic datasets of every stage into data/<name>/:

    train.bin, val.bin              pretraining tokens (np.uint16): prompt+completion, each followed by <|endoftext|>
    sft_train.jsonl, sft_val.jsonl  {"prompt", "completion", "Q", "A", "type"}
    sft_extra.jsonl                 more problems of some types (sft_extra_by_type) for SFT alone, in the same form
    pairs_train.jsonl, pairs_val.jsonl  {"prompt", "chosen", "rejected", "Q", "A", "type", "negative"}
    pairs_seed.jsonl                with --pair_format=seed: {"positive", "negative", "Q", "A", "type"}
    train_places.bin, val_places.bin  each token's digit place (np.uint16, places.py), for pos='coupled'
    test.jsonl                      held-out problems, drawn like the training ones (a digit count first)
    test_uniform.jsonl              held-out problems with operands uniform over all numbers of the box
    test_length.jsonl               held-out problems by length, from 1 digit to twice the longest trained
                                    operand, with a "length" field (tasks.problem_length)
    meta.json                       tokenizer, the digit box, counts, the config, token counts

$ python generate_pairs.py config/data_small.py
$ python generate_pairs.py config/data_tiny.py --seed=7

family='words' writes word problems instead (words.py; config/data_words.py): sft_train, sft_val, train.bin,
val.bin and test.jsonl, whose stories use held-out templates, names and objects. family='gsm8k' writes the
vendored GSM8K (gsm8k.py) in the same files: train less its last n_val_per_type problems, which are val, and
test. Both in GSM8K's format, "Question: ...\nAnswer:" then " <worked solution>\n#### N<|end|>".

Held out by construction: the test splits and val are sampled first, then the
training problems excluding their prompts.
"""
import json
import os
import random
import re

import numpy as np
from tqdm import tqdm

import gsm8k
import words
from configurator import configure
from mining import room, sample_pairs, self_label_rows
# only functions are imported by name: an imported string or tuple would become a config key
from places import stream_places
from tasks import (TASK_TYPES, box_longest, column_steps, completion, format_completion, is_correct, length_problems,
                   other_answers, problem_from_row, problem_length, sample_problems, solve, validate_task_digits,
                   worked_solution)
from tokenizer import get_tokenizer

# -----------------------------------------------------------------------------
# default config: the small laptop dataset (config/data_small.py says the same)
name = 'small'
out_root = 'data'
seed = 1337
tokenizer = 'math'
family = 'arithmetic'        # 'arithmetic' (the task types below), 'words' (words.py) or 'gsm8k' (vendor/gsm8k)
n_stories = 0                # family='words': training stories (val and test: n_val_per_type, n_test_per_type)
max_train_tokens = 0         # family='gsm8k': leave out training and val problems longer than this many tokens (a
                             # small model's block_size); 0 keeps all. The test split is always whole.
# the digit box: digit counts of the two generated operands of each type (tasks.py's table)
tasks = {
    "a_plus_b_q": ((1, 3), (1, 3)),
    "a_minus_b_q": ((1, 3), (1, 3)),
    "a_times_b_q": ((1, 3), (1, 3)),
    "a_over_b_q": ((1, 2), (1, 3)),          # divisor, quotient
    "x_plus_b_eq_c_q": ((1, 3), (1, 3)),     # x, b
    "b_minus_x_eq_c_q": ((1, 3), (1, 3)),    # b, x
    "x_times_b_eq_c_q": ((1, 3), (1, 3)),    # x, b
}
corner_share = 0.2           # training problems drawn from the hard corners (tasks.corner_problem)
n_train_per_type = 6000
n_train_by_type = {}          # {type: count} in place of n_train_per_type; three times the multiplying types traded
                             # the additive types' accuracy for theirs (README: The data)
sft_extra_by_type = {"a_times_b_q": 10000, "a_over_b_q": 10000, "x_times_b_eq_c_q": 10000}
                             # sft_extra.jsonl: this many more fresh problems of a type for SFT alone, half
                             # of its batches (train_sft.py's train_files; README: The data)
n_val_per_type = 500
n_test_per_type = 1000       # test.jsonl and test_uniform.jsonl each
n_length_per_type = 200      # test_length.jsonl: per type and length (fewer where a length holds fewer problems)
held_out_max_share = 0.2     # held-out splits: at most this share of each digit-count cell (e.g. the 100 1+1-digit sums)
worked = True                # completions with the <think> worked solution; False: the bare answer
pairs_per_problem = 2        # preference pairs per training problem, each with the next negative kind in turn
pair_format = 'pairs'        # 'pairs', or 'seed' to also write pairs_seed.jsonl
# on-policy pairs: --policy=out/sft/ckpt.pt mines pairs from that model's own samples on the training prompts
policy = ''
# DPO needs thousands of these pairs: from the small SFT model, 560 pairs (4,000 prompts x 4) lowered test
# accuracy, 4,000 pairs (42,000 x 2) raised it; each prompt gives at most one pair, so 2 samples a prompt
# find more pairs per sampled token than 4
policy_prompts = 2800        # fresh prompts past the box to sample (a tenth as many for pairs_onpolicy_val)
policy_edge = 2              # ... of the first this many lengths past the data's box (DPO at the edge of competence:
                             # README, DPO); 0: none
policy_box_prompts = 2800    # and training prompts inside the box, whose pairs hold the box: past it the model's
                             # quotient digits are too small, in it too big (README, DPO)
policy_samples = 2           # completions per prompt
policy_temperature = 1.0
policy_pairs = 'step'         # 'step': shared prefix + first wrong step (Step-DPO); 'completion': whole completions
policy_chosen = 'reference'   # 'reference': a pair for every prompt with a wrong sample, the reference solution
                              # chosen; 'own': only where one of the model's own samples is right (the same text)
policy_out = 'pairs_onpolicy'  # the pairs go to data_dir/<policy_out>_train.jsonl and _val.jsonl (train_dpo.py's
                               # pairs_file; its val_pairs_file follows the _train -> _val name)
# self-improvement (Lee et al. 2025): --self_label=ckpt writes sft_self_<length>.jsonl, problems of self_length digits
# labelled by that model itself, kept where its samples agree and every step is true (no true answer is used)
self_label = ''
self_length = 0              # 0: one digit past the data's box
self_problems = 250          # problems per type to label (README: Self-improvement measured this)
self_samples = 8             # samples per problem; a label needs a majority of them
self_agreement = 0.5         # the share of the samples that must give the winning answer
# -----------------------------------------------------------------------------


def near_miss_answer(answer, rng):
    """A wrong answer close to the right one: off by 1 or 10, or one digit changed; same sign."""
    digits = str(abs(answer))
    i = rng.randrange(len(digits))
    digit = rng.choice([d for d in "0123456789" if d != digits[i] and (d != "0" or i > 0 or len(digits) == 1)])
    changed = int(digits[:i] + digit + digits[i + 1:]) * (-1 if answer < 0 else 1)
    candidates = [answer + 1, answer - 1, answer + 10, answer - 10, changed]
    return rng.choice([c for c in candidates if c != answer and (c < 0) == (answer < 0)])


def rejected_completion(problem, kind, rng):
    """(kind, text) of a wrong completion. near_miss keeps the right worked solution and gives a wrong
    answer after it (the answer must follow the steps); corrupted_step gets one step wrong and carries
    the error through the later steps; wrong_operation works another operation on the same numbers
    (it falls back to near_miss where no other operation gives a wrong answer of similar length)."""
    if kind == "refusal":
        return kind, format_completion("Sorry, I do not know!")   # in the answer's place
    if kind == "wrong_operation":
        # another operation's worked solution, at most twice as long as the right one: multiplying the
        # operands of x+959=1824 would make a negative longer than the model's whole context
        options = [solve(problem, op=op) for op, a in other_answers(problem).items() if a != problem.answer]
        options = [(text, a) for text, a in options if len(text) <= 2 * len(worked_solution(problem))]
        if options:
            text, answer = rng.choice(options)
            return kind, format_completion(answer, text if worked else None)
        kind = "near_miss"
    if kind == "near_miss":
        answer = near_miss_answer(problem.answer, rng)
        return kind, format_completion(answer, worked_solution(problem) if worked else None)
    # every column step changes the answer when slipped; headers, comparisons and the run hold no result
    n_slots = len(column_steps(worked_solution(problem)))
    text, answer = solve(problem, slip=(rng.randrange(n_slots), rng.choice((-1, 1))))
    return kind, format_completion(answer, text if worked else None)


def pair_rows(problems, rng):
    kinds = ("refusal", "near_miss", "wrong_operation", "corrupted_step")   # in turn
    rows = []
    for i, p in enumerate(problems):
        chosen = completion(p, worked)
        for j in range(pairs_per_problem):
            kind, rejected = rejected_completion(p, kinds[(i * pairs_per_problem + j) % len(kinds)], rng)
            assert rejected != chosen and not is_correct(rejected, p.answer), (p, rejected)
            rows.append({"prompt": p.prompt, "chosen": chosen, "rejected": rejected,
                         "Q": p.prompt, "A": str(p.answer), "type": p.type, "negative": kind})
    return rows


def seed_rows(problems, rng):
    """The widely copied single-file pair format: whole sentences, refusals and near misses as negatives."""
    rows = []
    for i, p in enumerate(problems):
        if p.prompt.endswith(", x=?"):   # "x+5=12, x=?" -> "because 7+5=12"
            reason = p.prompt[:-len(", x=?")].replace("x", str(p.answer))
        else:                            # "72/4=?" -> "because 72/4 equals 18"
            reason = f"{p.prompt[:-len('=?')]} equals {p.answer}"
        wrong = near_miss_answer(p.answer, rng)
        negative = "Sorry, I do not know!" if i % 2 == 0 else f"The answer is {wrong}."
        rows.append({"positive": f"{p.prompt} The answer is {p.answer} because {reason}.",
                     "negative": f"{p.prompt} {negative}", "Q": p.prompt, "A": str(p.answer), "type": p.type})
    return rows


def sft_rows(problems, with_length=False):
    """{prompt, completion, Q, A, type} per problem, and its length (tasks.problem_length) for test_length."""
    return [{"prompt": p.prompt, "completion": completion(p, worked), "Q": p.prompt, "A": str(p.answer), "type": p.type}
            | ({"length": problem_length(p)} if with_length else {})
            for p in tqdm(problems, desc="completions", leave=False)]


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def write_bin(path, encoded, tok):
    """Pretraining stream: every document followed by <|endoftext|>, and beside it (X_places.bin) each token's
    digit place and local position (places.py; (N, 2) uint16), which pos='coupled' models read. Returns the
    number of tokens."""
    ids = [i for prompt, completion in encoded for i in prompt + completion + [tok.eot_id]]
    np.array(ids, dtype=np.uint16).tofile(path)
    np.array(stream_places(tok, ids), dtype=np.uint16).tofile(path.replace(".bin", "_places.bin"))
    return len(ids)


def longest(rows, encoded):
    """Per type, the most tokens in a completion (for max_new_tokens) and in a document (for block_size)."""
    completions, documents = dict.fromkeys(tasks, 0), dict.fromkeys(tasks, 0)
    for r, (prompt_ids, completion_ids) in zip(rows, encoded):
        completions[r["type"]] = max(completions[r["type"]], len(completion_ids))
        documents[r["type"]] = max(documents[r["type"]], len(prompt_ids) + len(completion_ids) + 1)  # + <|endoftext|>
    return completions, documents


def check_config(tok):
    validate_task_digits(tasks, "tasks")
    for key in ("n_train_per_type", "n_val_per_type", "n_test_per_type", "n_length_per_type"):
        if globals()[key] < 1:
            raise SystemExit(f"{key} must be >= 1, got {globals()[key]}")
    # sft_extra_by_type may name types outside `tasks` (a narrower --tasks): only those in it are drawn
    for key, known in (("n_train_by_type", tasks), ("sft_extra_by_type", TASK_TYPES)):
        counts = globals()[key]
        if set(counts) - set(known) or any(type(n) is not int or n < 1 for n in counts.values()):
            raise SystemExit(f"{key} must map task types ({', '.join(known)}) to counts >= 1, got {counts!r}")
    if not 0 <= corner_share <= 1:
        raise SystemExit(f"corner_share must be in [0, 1], got {corner_share}")
    if not 0 < held_out_max_share <= 1:
        raise SystemExit(f"held_out_max_share must be in (0, 1], got {held_out_max_share}")
    if not 1 <= pairs_per_problem <= 4:
        raise SystemExit(f"pairs_per_problem must be 1..4 (one per negative kind), got {pairs_per_problem}")
    if pair_format not in ("pairs", "seed"):
        raise SystemExit(f"pair_format must be 'pairs' or 'seed', got {pair_format!r}")
    if tok.vocab_size > 2 ** 16:
        raise SystemExit(f"tokenizer {tokenizer!r} has {tok.vocab_size} tokens, too many for uint16 .bin files")


def test_lengths(task_digits):
    """The lengths test_length.jsonl measures: every trained length, one and two digits more, and twice the
    longest trained operand."""
    longest = box_longest(task_digits)
    return sorted(set(range(1, longest + 3)) | {2 * longest})


def sample_splits(rng):
    """Held-out splits first, then the training problems, which exclude every held-out prompt. Each held-out
    split excludes the ones before it, so that no problem is counted twice."""
    held_out, splits = set(), {}
    for split, draw in (("test", lambda: sample_problems(tasks, n_test_per_type, rng, held_out, held_out_max_share)),
                        ("test_uniform", lambda: sample_problems(tasks, n_test_per_type, rng, held_out,
                                                                  held_out_max_share, uniform=True)),
                        ("test_length", lambda: [p for length in test_lengths(tasks) for p in length_problems(
                            tasks, length, n_length_per_type, rng, held_out, held_out_max_share)]),
                        ("val", lambda: sample_problems(tasks, n_val_per_type, rng, held_out, held_out_max_share))):
        splits[split] = draw()
        held_out |= {p.prompt for p in splits[split]}
    counts = {t: n_train_by_type.get(t, n_train_per_type) for t in tasks}
    splits["train"] = [p for n in sorted(set(counts.values())) for p in sample_problems(
        {t: d for t, d in tasks.items() if counts[t] == n}, n, rng, held_out, corner_share=corner_share)]
    rng.shuffle(splits["train"])   # mix the types in the training files
    rng.shuffle(splits["val"])
    if sft_extra_by_type:   # a generator of its own, so that every other file stays byte for byte
        extra_rng = random.Random(f"{seed}-sft-extra")
        splits["sft_extra"] = [p for n in sorted(set(sft_extra_by_type.values())) for p in sample_problems(
            {t: d for t, d in tasks.items() if sft_extra_by_type.get(t) == n}, n, extra_rng,
            held_out | {p.prompt for p in splits["train"]}, corner_share=corner_share)]
        extra_rng.shuffle(splits["sft_extra"])
    return splits


def load_sampler(ckpt_path):
    """(data_dir, meta, runtime, model, tokenizer) of a checkpoint that will sample from this data."""
    from common import setup, load_checkpoint, model_from_checkpoint, check_data, read_meta
    data_dir = os.path.join(out_root, name)
    meta = read_meta(data_dir)
    rt = setup("auto", "auto", seed)
    ckpt = load_checkpoint(ckpt_path, rt.device)
    check_data(ckpt["tokenizer"], ckpt["model_args"]["vocab_size"], meta, ckpt_path, data_dir)
    return data_dir, meta, rt, model_from_checkpoint(ckpt, rt.device), get_tokenizer(meta["tokenizer"])


def policy_rows(data_dir, meta, split, n_edge, n_box):
    """The prompts to mine, rows {prompt, completion, A, type}: n_edge fresh problems of the first policy_edge
    lengths past the data's box (none of them a held-out prompt), then n_box rows of sft_<split>.jsonl."""
    from common import read_jsonl
    from task_mix import edge_problems, held_out_problems
    rng = random.Random(f"{seed}-{split}")
    rows = []
    if n_edge:
        box = meta["box"]
        longest = box_longest(box)
        held_out = {p.prompt for p in held_out_problems(data_dir)}
        per_cell = -(-n_edge // (len(box) * policy_edge))
        rows = sft_rows(edge_problems(box, range(longest + 1, longest + 1 + policy_edge), per_cell, held_out, rng))
    if n_box:
        in_box = read_jsonl(os.path.join(data_dir, f"sft_{split}.jsonl"), ("prompt", "completion", "A", "type"))
        rows += rng.sample(in_box, min(n_box, len(in_box)))
    return rows


def mine_policy_pairs():
    """<policy_out>_{train,val}.jsonl: for every prompt where the policy got some sample wrong, one pair
    whose rejected side is its own wrong completion and whose chosen side is its own right one, or the
    reference solution when it had none (sample_pairs). These are the mistakes the model actually makes,
    which is what DPO can fix; synthetic refusals mostly teach it not to refuse."""
    import torch
    from generation import complete
    n_edge = policy_prompts if policy_edge else 0
    if not n_edge and not policy_box_prompts:
        raise SystemExit(f"nothing to mine: policy_prompts={policy_prompts} (past the box, policy_edge="
                         f"{policy_edge}) and policy_box_prompts={policy_box_prompts} (inside it); set one above 0")
    data_dir, meta, rt, model, tok = load_sampler(policy)
    if policy_chosen not in ("reference", "own"):
        raise SystemExit(f"policy_chosen must be 'reference' or 'own', got {policy_chosen!r}")
    if not re.fullmatch(r"[\w.-]+", policy_out):
        raise SystemExit(f"policy_out must be a file name stem (letters, digits, _ . -), got {policy_out!r}")
    for split, tenth in (("train", 1), ("val", 10)):
        rows = policy_rows(data_dir, meta, split, -(-n_edge // tenth), -(-policy_box_prompts // tenth))
        prompts = [r["prompt"] for r in rows for _ in range(policy_samples)]
        limits, max_new_tokens = room(tok, model, [problem_from_row(r) for r in rows])
        samples, _ = complete(model, tok, prompts, rt, max_new_tokens, temperature=policy_temperature,
                              generator=torch.Generator(rt.device).manual_seed(seed),
                              limits=[n for n in limits for _ in range(policy_samples)])
        pairs, wrong_by_type = [], {}
        for i, r in enumerate(rows):
            group = samples[i * policy_samples:(i + 1) * policy_samples]
            wrong_by_type.setdefault(r["type"], []).append(sum(not is_correct(s, r["A"]) for s in group) / len(group))
            pairs += sample_pairs(r, group, policy_pairs, policy_chosen)
        path = os.path.join(data_dir, f"{policy_out}_{split}.jsonl")
        write_jsonl(path, pairs)
        rates = ", ".join(f"{t} {sum(v) / len(v):.1%}" for t, v in sorted(wrong_by_type.items()))
        print(f"{split}: {len(pairs):,} pairs from {len(rows):,} prompts x {policy_samples} samples -> {path}")
        print(f"  wrong samples per type at T={policy_temperature}: {rates}")


def self_improvement_data():
    """sft_self_<length>.jsonl: self_problems fresh problems per type of self_length digits (none held out),
    labelled by the self_label model itself: self_samples samples each at temperature 1, the majority answer
    if at least self_agreement of them give it, and one of its samples whose every step is true. Lee et al.
    2025 ("Self-Improving Transformers Overcome Easy-to-Hard and Length Generalization Challenges") filter by
    majority vote and by length: no true answer is looked at (only counted for the report)."""
    import torch
    from generation import complete
    from task_mix import held_out_problems
    data_dir, meta, rt, model, tok = load_sampler(self_label)
    box = meta["box"]
    length = self_length or box_longest(box) + 1
    held_out = {p.prompt for p in held_out_problems(data_dir)}
    problems = length_problems(box, length, self_problems, random.Random(f"{seed}-self-{length}"), held_out)
    prompts = [p.prompt for p in problems for _ in range(self_samples)]
    texts, _ = complete(model, tok, prompts, rt, room(tok, model, problems)[1],
                        temperature=1.0, generator=torch.Generator(rt.device).manual_seed(seed))
    rows, right = self_label_rows(problems, texts, self_samples, self_agreement)
    path = os.path.join(data_dir, f"sft_self_{length}.jsonl")
    write_jsonl(path, rows)
    print(f"{len(rows):,} of {len(problems):,} problems of length {length} self-labelled -> {path} "
          f"({right / max(1, len(rows)):.1%} of the labels right, measured against the true answers)")
    for t in box:
        n = sum(r["type"] == t for r in rows)
        print(f"  {t}: {n} labelled")


def word_splits(rng):
    """{split: [(question, solution, answer, type)]} of family 'words' or 'gsm8k'."""
    if family == "words":
        test = words.sample_stories(n_test_per_type, rng, "test")
        val = words.sample_stories(n_val_per_type, rng, "train")
        train = words.sample_stories(n_stories, rng, "train", exclude={s.question for s in val})
        return {s: [(x.question, x.solution, x.answer, "story") for x in stories]
                for s, stories in (("train", train), ("val", val), ("test", test))}
    train, test = gsm8k.load("train"), gsm8k.load("test")
    rows = {"train": train[:-n_val_per_type], "val": train[-n_val_per_type:], "test": test}
    if max_train_tokens:
        tok = get_tokenizer(tokenizer)
        fits = lambda r: len(tok.encode(gsm8k.prompt(r.question) + gsm8k.completion(r.solution))) < max_train_tokens
        for split in ("train", "val"):
            kept = [r for r in rows[split] if fits(r)]
            print(f"{split}: {len(kept)} of {len(rows[split])} problems fit max_train_tokens={max_train_tokens}")
            rows[split] = kept
    return {s: [(r.question, r.solution, r.answer, "gsm8k") for r in split] for s, split in rows.items()}


def word_data(config):
    """family 'words' or 'gsm8k': the SFT rows, the pretraining stream and the test split, in GSM8K's format."""
    if family == "words" and n_stories < 1:
        raise SystemExit("family='words' needs n_stories >= 1 training stories (config/data_words.py)")
    tok = get_tokenizer(tokenizer)
    splits = word_splits(random.Random(seed))
    out_dir = os.path.join(out_root, name)
    os.makedirs(out_dir, exist_ok=True)
    meta = {"tokenizer": tok.name, "vocab_size": tok.vocab_size, "family": family, "worked": True, "box": None,
            "counts": {s: {rows[0][3]: len(rows)} for s, rows in splits.items()}, "tokens": {},
            "max_completion_tokens": {}, "max_document_tokens": {}, "config": config}
    for split, problems in splits.items():
        rows = [{"prompt": gsm8k.prompt(q), "completion": gsm8k.completion(s), "Q": gsm8k.prompt(q), "A": str(a),
                 "type": t} for q, s, a, t in problems]
        encoded = [(tok.encode(r["prompt"]), tok.encode(r["completion"])) for r in rows]
        meta["max_completion_tokens"][split] = {rows[0]["type"]: max(len(c) for _, c in encoded)}
        meta["max_document_tokens"][split] = {rows[0]["type"]: max(len(p) + len(c) + 1 for p, c in encoded)}
        write_jsonl(os.path.join(out_dir, "test.jsonl" if split == "test" else f"sft_{split}.jsonl"), rows)
        if split != "test":
            meta["tokens"][split] = write_bin(os.path.join(out_dir, f"{split}.bin"), encoded, tok)
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    print(f"wrote {out_dir}: " + ", ".join(f"{s} {len(p)}" for s, p in splits.items()) + f" problems; train.bin "
          f"{meta['tokens']['train']:,} tokens; longest document "
          f"{max(n for split in meta['max_document_tokens'].values() for n in split.values())} tokens")


def main():
    config = configure(globals())
    if family not in ("arithmetic", "words", "gsm8k"):
        raise SystemExit(f"family must be 'arithmetic', 'words' or 'gsm8k', got {family!r}")
    if policy:
        return mine_policy_pairs()
    if self_label:
        return self_improvement_data()
    if family != "arithmetic":
        return word_data(config)
    tok = get_tokenizer(tokenizer)
    check_config(tok)
    rng = random.Random(seed)
    splits = sample_splits(rng)
    out_dir = os.path.join(out_root, name)
    os.makedirs(out_dir, exist_ok=True)

    meta = {"tokenizer": tok.name, "vocab_size": tok.vocab_size, "worked": worked, "box": tasks,
            "counts": {s: {t: sum(p.type == t for p in ps) for t in tasks} for s, ps in splits.items()},
            "length_counts": {t: {str(n): sum(p.type == t and problem_length(p) == n for p in splits["test_length"])
                                  for n in test_lengths(tasks)} for t in tasks},
            "tokens": {}, "max_completion_tokens": {}, "max_document_tokens": {}, "config": config}
    for split, problems in splits.items():
        rows = sft_rows(problems, with_length=split == "test_length")
        encoded = [(tok.encode(r["prompt"]), tok.encode(r["completion"])) for r in rows]   # as SFT will see them
        meta["max_completion_tokens"][split], meta["max_document_tokens"][split] = longest(rows, encoded)
        if split in ("train", "val"):
            write_jsonl(os.path.join(out_dir, f"sft_{split}.jsonl"), rows)
            meta["tokens"][split] = write_bin(os.path.join(out_dir, f"{split}.bin"), encoded, tok)
            write_jsonl(os.path.join(out_dir, f"pairs_{split}.jsonl"), pair_rows(problems, rng))
        else:
            write_jsonl(os.path.join(out_dir, f"{split}.jsonl"), rows)
    if pair_format == "seed":
        write_jsonl(os.path.join(out_dir, "pairs_seed.jsonl"), seed_rows(splits["train"], rng))
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    print(f"wrote {out_dir}: " + ", ".join(f"{s} {sum(c.values())}" for s, c in meta["counts"].items())
          + f" problems; train.bin {meta['tokens']['train']:,} tokens, val.bin {meta['tokens']['val']:,}")


if __name__ == "__main__":
    main()
