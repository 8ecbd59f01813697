"""
Evaluate one or more checkpoints on held-out problems: greedy exact-match accuracy per task type with
95% bootstrap confidence intervals, format compliance, lengths, teacher-forced token accuracy, and
(with num_samples > 0) pass@k and maj@k from sampled completions. Several checkpoints are evaluated
on the same problems and compared in one table, with a paired-bootstrap CI of last minus first.

    python eval.py config/eval_small.py --ckpt=out/sft/ckpt.pt
    python eval.py config/eval_small.py --ckpt=out/sft/ckpt.pt,out/dpo/ckpt.pt
    python eval.py config/eval_small.py --ckpt=a,b,c,d --source=test_length --out_dir=out/eval_length
    python eval.py config/eval_small.py --ckpt=out/sft/ckpt.pt --source=test_uniform
    python eval.py config/eval_small.py --source=prompts.txt --show_transcripts=True
    python eval.py config/eval_small.py --source=my_problems.jsonl     # rows with Q, A and type, like test.jsonl
    python eval.py config/eval_small.py --num_samples=16 --temperature=0.8
    python eval.py config/eval_small.py --ckpt=out/sft_lora/ckpt.pt --merge_lora=False   # adapters kept apart
    python eval.py config/eval_words.py --calculator=exact      # word problems: a calculator fills <<48/2=
    python eval.py config/eval_words.py --source=gsm8k --num_samples=16   # GSM8K test, 2-shot

Every table also gives accuracy by length (tasks.problem_length: the digits of the longest operand), and
marks with * the lengths longer than any the checkpoint trained on (its digit box).
Writes out_dir/results.json (every number, and every greedy completion), out_dir/results.md (the
tables, also printed) and out_dir/transcripts.jsonl (generated tokens with their log-probs).
Answers are extracted and checked by tasks.py only, as in generate_pairs.py and the GRPO reward
(through gsm8k.is_correct, which first cuts off a few-shot model's run-on into a question of its own).
"""
import json
import os
import random
import re
import tempfile
import time
from collections import Counter

import numpy as np
import torch

from common import (setup, load_checkpoint, model_from_checkpoint, check_data, read_problems, read_meta,
                    length_table, markdown_table, percent)
from batches import pack_rows, segment_mask
from scoring import bootstrap_ci, completion_token_hits, group_metrics, length_metrics, majority_correct, pass_at_k
from generation import check_prompt, complete, encode_example
from configurator import configure
import gsm8k
from tasks import (TASK_TYPES, Problem, completion, has_canonical_format, normalize_prompt, parse_prompt,
                   problem_length, sample_problems)
from tokenizer import get_tokenizer, token_label

# -----------------------------------------------------------------------------
# defaults: every test problem of the small dataset; config/*.py and --key=value override them
out_dir = "out/eval"
data_dir = "data/small"
ckpt = "out/sft/ckpt.pt"    # one checkpoint, or several separated by commas for a side-by-side table
source = "test"             # "test", "test_uniform", "test_length", "generated", "gsm8k" (vendor/gsm8k's test
                            # split), a .jsonl file of rows like test.jsonl's, or a text file with one prompt a line
shots = 2                   # source=gsm8k: worked GSM8K examples before each question (0: a model fine-tuned on
                            # GSM8K's format, family='gsm8k' data)
calculator = ""             # word problems: "" none; "exact": an annotation <<48/2= gets its result from
                            # gsm8k.calculate; a checkpoint path: from that arithmetic model (gsm8k.model_calculator)
n_per_type = 0              # at most this many problems per task type, per type and length in test_length (0 = all);
                            # "generated" draws this many
max_new_tokens = 600        # the longest reference completion of test_length (a 6-digit x*b=c) has ~580 tokens
batch_size = 500
num_samples = 0             # > 0: also sample this many completions per problem for pass@k and maj@k
temperature = 1.0           # of those samples; the accuracy column is always greedy
top_k = 0
top_p = 1.0
n_transcripts = 5           # examples per checkpoint written token by token to transcripts.jsonl
show_transcripts = False    # and printed
merge_lora = True           # an adapter checkpoint (lora.py): fold the adapters into its base, a plain model as fast
                            # as one; False runs base and adapters as they trained (a quantized base stays so)
device = "auto"
dtype = "auto"
seed = 1337


# -----------------------------------------------------------------------------
# problems

def format_ok(item, text):
    """An arithmetic completion has the canonical format (tasks.has_canonical_format); a word problem's ends
    with GSM8K's answer line, '#### N' then <|end|>."""
    if isinstance(item, Problem) and item.type not in TASK_TYPES:
        return re.search(r"\n#### -?\d+<\|end\|>$", text) is not None
    return has_canonical_format(text)


def group_of(item):
    """Items are Problems, or plain prompt strings that cannot be graded."""
    return item.type if isinstance(item, Problem) else "ungraded"


def prompt_of(item):
    return item.prompt if isinstance(item, Problem) else item


def read_prompts(path):
    """One prompt a line; a line that states one of the task forms, spaces dropped as sample.py drops them
    (`3 + 4 = ?` is `3+4=?`), becomes a Problem with its answer computed; any other line stays a plain prompt,
    as written: it is run but not graded."""
    with open(path) as f:
        lines = [line.strip() for line in f if line.strip()]
    if not lines:
        raise SystemExit(f"{path} has no prompts: write one a line, e.g. 17+19=?")
    return [parse_prompt(normalize_prompt(line)) or line for line in lines]


def load_problems(source, data_dir, n_per_type=0, seed=1337):
    """The items to evaluate, in file order, at most n_per_type of each task type (0 = all). "generated"
    draws n_per_type fresh problems of each type (0: the data's n_test_per_type) from the data's digit
    config with this seed; unlike test, they may repeat training problems."""
    if source in ("test", "test_uniform", "test_length"):
        items = read_problems(os.path.join(data_dir, f"{source}.jsonl"))
    elif source == "gsm8k":
        examples = gsm8k.default_shots(gsm8k.load("train"), shots) if shots else []
        items = [Problem("gsm8k", gsm8k.few_shot_prompt(r.question, examples), r.answer) for r in gsm8k.load("test")]
    elif source.endswith(".jsonl") and os.path.isfile(source):   # rows with Q, A and type, like test.jsonl
        items = read_problems(source)
    elif source == "generated":
        data_config = read_meta(data_dir)["config"]
        items = sample_problems(data_config["tasks"], n_per_type or data_config["n_test_per_type"],
                                random.Random(seed))
    elif os.path.isfile(source):
        items = read_prompts(source)
    else:
        raise SystemExit(f"source={source!r}: use test, test_uniform, test_length, generated, gsm8k or the path "
                         "of a prompts file")
    if not n_per_type:
        return items
    kept, counts = [], Counter()
    for item in items:   # test_length: per type and length, so that every length keeps its problems
        key = (group_of(item), problem_length(item)) if source == "test_length" else group_of(item)
        counts[key] += 1
        if counts[key] <= n_per_type:
            kept.append(item)
    return kept


def rooms(tok, prompts, block_size, max_new_tokens, too_long_wrong=False):
    """The new tokens each prompt may generate: max_new_tokens, or less where the prompt's own length leaves
    less room in block_size. A prompt that leaves none is an error, or with too_long_wrong (GSM8K's fixed test
    split and a small model's context) gets no answer and counts as wrong; fewer than max_new_tokens is a note."""
    lengths = [len(tok.encode(p)) for p in prompts]
    longest = int(np.argmax(lengths))
    if not too_long_wrong:
        check_prompt(tok, prompts[longest], block_size)
    out = [max(0, min(max_new_tokens, block_size - n)) for n in lengths]
    if out.count(0):
        print(f"note: {out.count(0)} prompt(s) do not fit block_size {block_size}: no answer, counted wrong")
    short = sum(r < max_new_tokens for r in out)
    if short:
        print(f"note: {short} prompt(s) leave fewer than max_new_tokens={max_new_tokens} new tokens in block_size "
              f"{block_size}; the longest, {prompts[longest]!r}, leaves {out[longest]}")
    return out


# -----------------------------------------------------------------------------
# evaluation of one model

def generated_rows(generations):
    """Per prompt, across the batches: the generated ids and their log-probs (stop token included)."""
    ids, logprobs = [], []
    for gen in generations:
        for tokens, logps, mask in zip(gen.tokens, gen.logprobs, gen.mask):
            ids.append(tokens[mask].tolist())
            logprobs.append(logps[mask].tolist())
    return ids, logprobs


def complete_in_rooms(model, tok, prompts, rt, room, batch_size, *sampling, tools=None, expected=None):
    """generation.complete with room[i] new tokens for prompt i: prompts with the same room share batches, so a
    long prompt does not cut the answers of short ones. sampling: complete's temperature, top_k, top_p,
    generator. expected: each prompt's expected completion length (its reference's tokens), or None: prompts
    of similar length then share a batch, which runs full until they end instead of shrinking to the few long
    rows of a mixed batch (README: Benchmarks). Returns the texts and, per prompt, the generated ids and their
    log-probs, in the prompts' order."""
    texts, ids, logprobs = [""] * len(prompts), [[] for _ in prompts], [[] for _ in prompts]
    for r in sorted(set(room) - {0}, reverse=True):   # a prompt with no room gets no answer (rooms)
        group = [i for i, n in enumerate(room) if n == r]
        if expected is not None:
            group.sort(key=lambda i: expected[i])
        group_texts, generations = complete(model, tok, [prompts[i] for i in group], rt, r, batch_size, *sampling,
                                            tools=tools)
        for i, text, row_ids, row_logprobs in zip(group, group_texts, *generated_rows(generations)):
            texts[i], ids[i], logprobs[i] = text, row_ids, row_logprobs
    return texts, ids, logprobs


def worked_length(ids, tok):
    """Tokens between <think> and </think>; NaN when the completion has no complete worked solution."""
    if tok.think_id not in ids or tok.end_think_id not in ids:
        return float("nan")
    start, end = ids.index(tok.think_id), ids.index(tok.end_think_id)
    return end - start - 1 if end > start else float("nan")


@torch.no_grad()
def token_accuracy(model, tok, prompts, references, rt, batch_size):
    """Right argmax predictions and completion tokens per reference completion, one forward a batch of
    batch_size references packed into rows (batches.pack_rows), each seeing only itself."""
    model.eval()
    hits, totals = [], []
    for i in range(0, len(prompts), batch_size):
        encoded = [encode_example(tok, p, r, model.config.block_size)
                   for p, r in zip(prompts[i:i + batch_size], references[i:i + batch_size])]
        idx, mask, places, positions, segment = (t.to(rt.device) for t in pack_rows(encoded))
        with rt.autocast:
            logits, _ = model(idx, positions=positions, places=places, attn_mask=segment_mask(segment))  # (R, T, vocab)
        h, t = completion_token_hits(logits, idx, mask, segment, len(encoded))
        hits.append(h.cpu())
        totals.append(t.cpu())
    return torch.cat(hits).numpy(), torch.cat(totals).numpy()


def sampled_metrics(model, tok, problems, rt, n, room, batch_size, temperature, top_k, top_p, seed, tools=None):
    """pass@k for k = 1, 2, 4, ... n (unbiased estimate from n samples) and maj@n, per problem (room: the
    new tokens of each; tools: generation.complete's)."""
    generator = torch.Generator(device=rt.device).manual_seed(seed)
    texts, _, _ = complete_in_rooms(model, tok, [p.prompt for p in problems for _ in range(n)], rt,
                                    [r for r in room for _ in range(n)], batch_size, temperature, top_k, top_p,
                                    generator, tools=tools)
    ks = sorted({2 ** i for i in range(n.bit_length()) if 2 ** i <= n} | {n})
    metrics = {f"pass@{k}": np.zeros(len(problems)) for k in ks} | {f"maj@{n}": np.zeros(len(problems))}
    for i, p in enumerate(problems):
        samples = texts[i * n:(i + 1) * n]
        c = sum(gsm8k.is_correct(t, p.answer) for t in samples)
        for k in ks:
            metrics[f"pass@{k}"][i] = pass_at_k(n, c, k)
        metrics[f"maj@{n}"][i] = majority_correct(samples, p.answer)
    return metrics


def transcripts(tok, items, texts, ids, logprobs, n):
    """n examples spread over the items (so over the task types), every generated token with its id,
    text and log-prob."""
    picks = sorted(set(np.linspace(0, len(items) - 1, n).round().astype(int).tolist())) if n else []
    out = []
    for i in picks:
        answer = items[i].answer if isinstance(items[i], Problem) else None
        out.append({"prompt": prompt_of(items[i]), "answer": answer, "completion": texts[i],
                    "correct": None if answer is None else gsm8k.is_correct(texts[i], answer),
                    "tokens": [{"id": t, "text": s, "logprob": lp}
                               for t, s, lp in zip(ids[i], tok.decode_tokens(ids[i]), logprobs[i])]})
    return out


def evaluate_checkpoint(model, tok, problems, rt, max_new_tokens=100, batch_size=500, num_samples=0,
                        temperature=1.0, top_k=0, top_p=1.0, worked=True, n_transcripts=0, seed=1337, tools=None,
                        too_long_wrong=False):
    """Greedy completions of every item, then per task type and overall: accuracy with its bootstrap
    CI, format rate, lengths, teacher-forced token accuracy (references made by tasks.completion with
    the data's `worked` setting) and, with num_samples > 0, pass@k and maj@k. Returns a dict with
    "metrics" {group: {...}}, the per-item "completions" and "correct" (None if ungraded), and
    "transcripts". Each item may generate max_new_tokens, or what room its prompt leaves in block_size.
    tools: generation.complete's (a calculator for word problems)."""
    prompts = [prompt_of(p) for p in problems]
    room = rooms(tok, prompts, model.config.block_size, max_new_tokens, too_long_wrong)
    groups = np.array([group_of(p) for p in problems])
    is_graded = groups != "ungraded"
    references = {i: completion(problems[i], worked) for i in np.flatnonzero(is_graded)
                  if problems[i].type in TASK_TYPES}   # a word problem's reference is not made by tasks.py
    reference_len = {i: len(tok.encode(r)) for i, r in references.items()}
    texts, ids, logprobs = complete_in_rooms(model, tok, prompts, rt, room, batch_size, tools=tools,
                                             expected=[reference_len.get(i, 0) for i in range(len(prompts))])
    graded = [p for p in problems if isinstance(p, Problem)]
    N = len(problems)
    per_item = {"canonical": np.array([format_ok(p, t) for p, t in zip(problems, texts)]),
                "completion_len": np.array([len(r) for r in ids], dtype=float),
                "worked_len": np.array([worked_length(r, tok) for r in ids], dtype=float),
                "correct": np.full(N, np.nan), "token_hits": np.zeros(N), "token_total": np.zeros(N)}
    per_item["correct"][is_graded] = [gsm8k.is_correct(texts[i], problems[i].answer) for i in np.flatnonzero(is_graded)]
    # a typed-in problem with long numbers may have a reference that does not fit: it is not scored
    scored = [i for i in references if len(tok.encode(prompts[i])) + reference_len[i] <= model.config.block_size]
    if scored:
        per_item["token_hits"][scored], per_item["token_total"][scored] = token_accuracy(
            model, tok, [prompts[i] for i in scored], [references[i] for i in scored], rt, batch_size)
    if num_samples and graded:
        graded_room = [room[i] for i in np.flatnonzero(is_graded)]
        for key, values in sampled_metrics(model, tok, graded, rt, num_samples, graded_room, batch_size,
                                           temperature, top_k, top_p, seed, tools).items():
            per_item[key] = np.full(N, np.nan)
            per_item[key][is_graded] = values
    present = [g for g in dict.fromkeys(groups) if g != "ungraded"]   # task types in file order
    metrics = {t: group_metrics(groups == t, per_item, True, seed) for t in present}
    if graded:
        metrics["overall"] = group_metrics(is_graded, per_item, True, seed)
    if not is_graded.all():
        metrics["ungraded"] = group_metrics(~is_graded, per_item, False, seed)
    return {"metrics": metrics, "max_new_tokens": max_new_tokens,
            "by_length": length_metrics(problems, per_item["correct"], seed),
            # a reference answer longer than its generation budget cannot be produced in full
            "references_over_budget": sum(n > room[i] for i, n in reference_len.items()),
            "completions": texts,
            "correct": [None if np.isnan(c) else bool(c) for c in per_item["correct"]],
            "transcripts": transcripts(tok, problems, texts, ids, logprobs, n_transcripts)}


# -----------------------------------------------------------------------------
# several checkpoints: the comparison and the report

def paired_delta(first, last, problems, seed=1337):
    """Accuracy of last minus first per group, with a paired bootstrap CI: both were evaluated on the
    same problems, so resampling problems and differencing removes the problem-to-problem variance."""
    groups = np.array([group_of(p) for p in problems])
    a = np.array([np.nan if c is None else float(c) for c in first["correct"]])
    b = np.array([np.nan if c is None else float(c) for c in last["correct"]])
    out = {}
    for group in first["metrics"]:
        if group == "ungraded":
            continue
        sel = groups != "ungraded" if group == "overall" else groups == group
        diff = b[sel] - a[sel]
        out[group] = {"diff": float(diff.mean()), "ci": bootstrap_ci(diff, seed=seed)}
    return out


def metrics_table(results):
    """The other overall numbers, a row per checkpoint."""
    rows = []
    for c in results["checkpoints"]:
        m = c["metrics"].get("overall", c["metrics"].get("ungraded"))
        row = {"checkpoint": c["name"], "format %": f"{100 * m['format_rate']:.1f}",
               "completion tokens": f"{m['completion_len']:.1f}",
               "worked tokens": "-" if m["worked_len"] is None else f"{m['worked_len']:.1f}"}
        if m.get("token_acc") is not None:
            row["token acc %"] = f"{100 * m['token_acc']:.1f}"
        row |= {k: f"{100 * v:.1f}" for k, v in m.items() if k.startswith(("pass@", "maj@"))}
        if "ungraded" in c["metrics"]:
            row["ungraded"] = str(c["metrics"]["ungraded"]["n"])
        rows.append(row)
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return "\n".join(lines + ["| " + " | ".join(r.get(h, "-") for h in header) + " |" for r in rows])


def checkpoint_names(paths):
    """The stage directory (out/sft/ckpt.pt -> sft) when that tells the checkpoints apart, else the path."""
    names = [os.path.basename(os.path.dirname(os.path.abspath(p))) for p in paths]
    return names if len(set(names)) == len(names) else paths


def format_transcript(name, t):
    tokens = " ".join(token_label(x["text"], x["id"], np.exp(x["logprob"])) for x in t["tokens"])
    verdict = "ungraded" if t["correct"] is None else ("right" if t["correct"] else f"wrong, answer {t['answer']}")
    return f"[{name}] {t['prompt']}  ->  {tokens}  [{verdict}]"


def load_checked(path, problems, meta):
    """A checkpoint (without its optimizer state), checked against the data and the prompts: every one
    is loaded before any is evaluated, so that a bad one stops eval.py before it has spent any time."""
    checkpoint = load_checkpoint(path, "cpu")
    checkpoint.pop("optimizer", None)
    check_data(checkpoint["tokenizer"], checkpoint["model_args"]["vocab_size"], meta, path, data_dir)
    tok = get_tokenizer(checkpoint["tokenizer"])
    longest = max((prompt_of(p) for p in problems), key=lambda text: len(tok.encode(text)))
    if source != "gsm8k":   # GSM8K's test split is what it is: a prompt a small model cannot hold counts as wrong
        check_prompt(tok, longest, checkpoint["model_args"]["block_size"])
    return checkpoint


def check_writable(out_dir):
    """Before any evaluation: results that cannot be written are lost."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as e:
        raise SystemExit(f"out_dir {out_dir!r} is not writable ({type(e).__name__}: {e.strerror}): "
                         "pass another --out_dir")


def calculator_tool(rt):
    """generation.complete's tools for the calculator key: None, gsm8k.calculator_fill, or an arithmetic
    checkpoint's answers (gsm8k.model_calculator)."""
    if not calculator:
        return None
    if calculator == "exact":
        return gsm8k.calculator_fill
    checkpoint = load_checkpoint(calculator, "cpu")
    return gsm8k.model_calculator(model_from_checkpoint(checkpoint, rt.device), get_tokenizer(checkpoint["tokenizer"]),
                                  rt)


def evaluate_path(name, path, checkpoint, problems, meta, rt, tools):
    """Evaluate one loaded checkpoint and log one line (and transcripts)."""
    tok = get_tokenizer(checkpoint["tokenizer"])
    model = model_from_checkpoint(checkpoint, rt.device, merge_lora=merge_lora)
    t0 = time.time()
    r = evaluate_checkpoint(model, tok, problems, rt, max_new_tokens, batch_size, num_samples, temperature, top_k,
                            top_p, meta.get("worked", True), n_transcripts, seed, tools, source == "gsm8k")
    r = {"name": name, "ckpt": path, "iter_num": checkpoint.get("iter_num"), "seconds": time.time() - t0,
         "box": checkpoint.get("box")} | r
    overall = r["metrics"].get("overall")
    print(f"{name} ({path}, iter {r['iter_num']}): {len(problems)} problems in {r['seconds']:.1f}s"
          + (f", accuracy {percent(overall['acc'], overall['ci'])}" if overall else ""))
    if r["references_over_budget"]:
        print(f"note: {r['references_over_budget']} reference completions are longer than the new tokens their "
              f"prompt may generate (max_new_tokens={max_new_tokens}, block_size {model.config.block_size}) and "
              "cannot be produced in full")
    if show_transcripts:
        print("\n".join(format_transcript(name, t) for t in r["transcripts"]))
    return r


def write_report(results, n_problems):
    """Print the tables; write results.md, results.json and transcripts.jsonl to out_dir."""
    has_graded = "overall" in results["checkpoints"][0]["metrics"]
    report = ((markdown_table(results) + "\n\n") if has_graded else "") + metrics_table(results) + "\n"
    if has_graded and any(len(cells) for cells in results["checkpoints"][0]["by_length"].values()):
        report += "\nBy length (* longer than any trained operand):\n\n" + "\n\n".join(
            length_table(c, c["box"]) for c in results["checkpoints"]) + "\n"
    print("\n" + report)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "transcripts.jsonl"), "w") as f:
        for c in results["checkpoints"]:
            for t in c.pop("transcripts"):
                f.write(json.dumps({"checkpoint": c["name"]} | t) + "\n")
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(f"# {source}: {n_problems} problems\n\n" + report)
    print(f"wrote {out_dir}/results.json, results.md, transcripts.jsonl")


def main():
    config = configure(globals())
    rt = setup(device, dtype, seed)
    meta = read_meta(data_dir)
    problems = load_problems(source, data_dir, n_per_type, seed)
    paths = [p for p in ckpt.split(",") if p]
    if not paths:
        raise SystemExit("no checkpoint given: pass --ckpt=out/sft/ckpt.pt (several separated by commas)")
    check_writable(out_dir)
    checkpoints = [load_checked(path, problems, meta) for path in paths]
    tools = calculator_tool(rt)
    print(f"{len(problems)} problems from {source}, device {rt.device} ({rt.dtype})")
    results = {"source": source, "config": config,
               "problems": [{"type": group_of(p), "prompt": prompt_of(p),
                             "answer": p.answer if isinstance(p, Problem) else None} for p in problems],
               "checkpoints": [evaluate_path(name, path, checkpoint, problems, meta, rt, tools)
                               for name, path, checkpoint in zip(checkpoint_names(paths), paths, checkpoints)]}
    if len(paths) > 1:
        results["delta"] = paired_delta(results["checkpoints"][0], results["checkpoints"][-1], problems, seed)
    write_report(results, len(problems))


if __name__ == "__main__":
    main()
