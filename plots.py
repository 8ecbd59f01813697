"""
Plots of nanomath's data and runs, for the notebooks and the speedrun's report card. Each function takes
paths (a data_dir, an out_dir with its log.jsonl, eval.py's results.json) or loaded rows and returns a
matplotlib Figure made without pyplot, so nothing global changes: a notebook displays it, the report
card saves it.

    from plots import save_report_plots
    save_report_plots("out", "plots")   # loss_curves.png, stage_accuracy(_ood).png, dpo.png, grpo.png

Where the notebooks find the runs they plot is notebook_runs.py.
"""
import html
import json
import os
from collections import Counter

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from batches import sft_batch
from common import read_jsonl, read_meta
from model import token_logprobs
from places import completion_places
from tasks import Problem, classify_error
from tokenizer import get_tokenizer


# -----------------------------------------------------------------------------
# reading runs


def read_log(out_dir):
    """The rows of out_dir/log.jsonl, as the stage scripts' MetricsLog wrote them."""
    return read_jsonl(os.path.join(out_dir, "log.jsonl"), ("iter", "split"))


def split_rows(rows, split, key=None):
    """The rows of one split ("train" or "eval"), only those that have key when one is given."""
    return [r for r in rows if r["split"] == split and (key is None or key in r)]


def mean_loss(value):
    """Pretraining logs one validation loss; SFT logs {task type: loss}, summarised by their mean as it prints."""
    return float(np.mean(list(value.values()))) if isinstance(value, dict) else value


def results_list(results):
    """eval.py results as a list of dicts, from a dict, the path of a results.json, or a list of either."""
    def load(item):
        if isinstance(item, dict):
            return item
        with open(item) as f:
            return json.load(f)
    return [load(item) for item in (results if isinstance(results, (list, tuple)) else [results])]


def plot_metric(ax, rows, key, label, **style):
    """key against iteration over the rows that log it; nothing when none does."""
    rows = [r for r in rows if key in r]
    if rows:
        ax.plot([r["iter"] for r in rows], [r[key] for r in rows], label=label, **style)


def plot_overall_accuracy(ax, rows):
    """Greedy accuracy on held-out problems, overall, at every eval row that logs it."""
    rows = [r for r in rows if "accuracy" in r]
    ax.plot([r["iter"] for r in rows], [r["accuracy"]["overall"] for r in rows], color="black", marker="o")
    ax.set(title="greedy accuracy, held-out problems", xlabel="iteration", ylim=(-0.03, 1.03))


def new_figure(n_rows, n_cols, width, height):
    fig = Figure(figsize=(width * n_cols, height * n_rows), layout="constrained")
    return fig, fig.subplots(n_rows, n_cols, squeeze=False)

# -----------------------------------------------------------------------------
# data


def data_overview(data_dir):
    """Problems per task type in every split (meta.json), and the histogram of completion lengths in tokens
    per task type over sft_train.jsonl: the worked solutions set max_new_tokens and block_size."""
    meta = read_meta(data_dir)
    tok = get_tokenizer(meta["tokenizer"])
    rows = read_jsonl(os.path.join(data_dir, "sft_train.jsonl"), ("completion", "type"))
    fig, axes = new_figure(1, 2, 6.5, 3.8)
    counts_ax, lengths_ax = axes[0]
    types = list(meta["counts"]["train"])
    width = 0.8 / len(meta["counts"])
    for k, (split, counts) in enumerate(meta["counts"].items()):
        counts_ax.bar(np.arange(len(types)) + k * width, [counts.get(t, 0) for t in types], width, label=split)
    counts_ax.set_xticks(np.arange(len(types)) + 0.4 - width / 2, types, rotation=30, ha="right")
    counts_ax.set(title="problems per task type", ylabel="problems")
    counts_ax.legend()
    lengths = {t: [len(tok.encode(r["completion"])) for r in rows if r["type"] == t] for t in types}
    bins = np.arange(0, max(max(v) for v in lengths.values() if v) + 3, 2)
    for t in types:
        lengths_ax.hist(lengths[t], bins=bins, histtype="step", linewidth=1.5, label=t)
    lengths_ax.set(title="completion length (sft_train)", xlabel="tokens", ylabel="completions")
    lengths_ax.legend(fontsize=7)
    return fig

# -----------------------------------------------------------------------------
# pretraining and SFT


def loss_curves(out_dirs):
    """Training and validation loss against iteration, one panel per run ({name: out_dir}), each on its own axes:
    pretraining scores windows of several problems (and with prompt_loss=True their random operands too), SFT
    each problem's completion."""
    fig, axes = new_figure(1, len(out_dirs), 5, 3.6)
    for ax, (name, out_dir) in zip(axes[0], out_dirs.items()):
        rows = read_log(out_dir)
        plot_metric(ax, split_rows(rows, "train"), "loss", "train (batch)", color="C0", alpha=0.6)
        evals = split_rows(rows, "eval")
        plot_metric(ax, evals, "train_loss", "train (eval)", color="C0", marker="o")
        evals = [dict(r, val_loss=mean_loss(r["val_loss"])) for r in evals if "val_loss" in r]
        plot_metric(ax, evals, "val_loss", "validation", color="C1", marker="o")
        ax.set(title=name, xlabel="iteration", ylabel="cross-entropy (nats per token)")
        ax.legend()
    return fig


def lr_curve(out_dirs):
    """The learning rate each run ({name: out_dir}) used, against iteration: warmup, then cosine decay."""
    fig, axes = new_figure(1, 1, 5.5, 3.2)
    ax = axes[0, 0]
    for name, out_dir in out_dirs.items():
        rows = sorted((r for r in read_log(out_dir) if "lr" in r), key=lambda r: r["iter"])
        plot_metric(ax, rows, "lr", name)
    ax.set(title="learning rate", xlabel="iteration", ylabel="lr")
    ax.legend()
    return fig


def mask_picture(tok, prompt, completion):
    """One SFT training row as batches.sft_batch builds it: the input tokens and, under each, the token it
    is trained to predict next. Pretraining scores every target; SFT only the completion's (the others are
    -1, ignored by the loss), so no gradient goes to predicting the prompt's random operands."""
    ids = tok.encode(prompt) + tok.encode(completion)
    n_prompt = len(tok.encode(prompt))
    x, y, _ = sft_batch([{"prompt": prompt, "completion": completion}], [0], tok, len(ids), "cpu")  # (1, T-1) each
    inputs = tok.decode_tokens(x[0].tolist())
    targets = tok.decode_tokens(ids[1:])
    scored = (y[0] >= 0).tolist()
    prompt_color, completion_color, scored_color = "#d9d9d9", "#9ecae1", "#fdae6b"
    rows = [("input", inputs, [prompt_color if i < n_prompt else completion_color for i in range(len(inputs))]),
            ("pretraining target", targets, [scored_color] * len(targets)),
            ("SFT target", [t if s else "-1" for t, s in zip(targets, scored)],
             [scored_color if s else "white" for s in scored])]
    fig = Figure(figsize=(0.3 * len(inputs) + 1.8, 2.4), layout="constrained")
    ax = fig.subplots()
    for r, (label, texts, colors) in enumerate(rows):
        y0 = len(rows) - 1 - r
        for i, (text, color) in enumerate(zip(texts, colors)):
            ax.add_patch(Rectangle((i, y0), 1, 1, facecolor=color, edgecolor="white"))
            ax.text(i + 0.5, y0 + 0.5, text, ha="center", va="center", fontsize=7,
                    rotation=90 if len(text) > 2 else 0, color="#888888" if text == "-1" else "black")
    ax.set(xlim=(0, len(inputs)), ylim=(0, len(rows)))
    ax.set_yticks([len(rows) - 0.5 - r for r in range(len(rows))], [label for label, _, _ in rows])
    ax.set_xticks([])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.legend(handles=[Patch(color=prompt_color, label="prompt"), Patch(color=completion_color, label="completion"),
                       Patch(color=scored_color, label="scored by the loss")],
              loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=8, frameon=False)
    return fig


@torch.no_grad()
def token_losses(models, tok, prompt, completion):
    """The loss on every token of prompt + completion under each model ({name: GPT}), as bars over the token
    they predict; the completion's tokens are shaded. Under a pretrained model the prompt's digits cost about
    ln 10 = 2.3 nats each (they are random); an SFT model, never trained on them, may pay more."""
    ids = tok.encode(prompt) + tok.encode(completion)
    n_prompt = len(tok.encode(prompt))
    fig = Figure(figsize=(0.3 * len(ids) + 1.5, 3.2), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(models)
    for k, (name, model) in enumerate(models.items()):
        model.eval()
        device = next(model.parameters()).device
        idx = torch.tensor([ids], device=device)                             # (1, T)
        places = torch.tensor([completion_places(tok, ids[:n_prompt], ids[n_prompt:])], device=device)
        logits, _ = model(idx, places=places)                                # (1, T, vocab)
        losses = -token_logprobs(logits, idx)[0].cpu().numpy()               # (T-1,): the loss on token t+1
        ax.bar(np.arange(1, len(ids)) + (k - (len(models) - 1) / 2) * width, losses, width, label=name)
    ax.axvspan(n_prompt - 0.5, len(ids) - 0.5, color="#9ecae1", alpha=0.25, label="completion")
    ax.set_xticks(np.arange(1, len(ids)), tok.decode_tokens(ids[1:]), fontsize=7, rotation=90)
    ax.set(xlim=(0.4, len(ids) - 0.4), ylabel="loss (nats)", title=f"loss per predicted token: {prompt}")
    ax.legend(fontsize=8)
    return fig


def accuracy_over_training(out_dir, title="greedy accuracy on held-out problems"):
    """Greedy exact-match accuracy per task type (thin) and overall (thick) at every evaluation, from the
    "accuracy" dicts that train_sft.py, train_dpo.py and train_grpo.py log on their eval rows."""
    fig, axes = new_figure(1, 1, 6.5, 3.6)
    ax = axes[0, 0]
    evals = split_rows(read_log(out_dir), "eval", "accuracy")
    iters = [r["iter"] for r in evals]
    for task_type in sorted({t for r in evals for t in r["accuracy"]} - {"overall"}):
        ax.plot(iters, [r["accuracy"].get(task_type, np.nan) for r in evals], marker=".", linewidth=1, label=task_type)
    ax.plot(iters, [r["accuracy"].get("overall", np.nan) for r in evals], color="black", linewidth=2.5,
            marker="o", label="overall")
    ax.set(title=title, xlabel="iteration", ylabel="exact match", ylim=(-0.03, 1.03))
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig

# -----------------------------------------------------------------------------
# DPO and GRPO


def dpo_curves(out_dir):
    """train_dpo.py's metrics (TRL's names) on the training batches (lines) and the held-out pairs (dots):
    loss, the implicit rewards beta * log(pi / pi_ref) of chosen and rejected completions, their margin,
    the share of pairs whose chosen reward is higher, the summed log-probs, and greedy accuracy."""
    rows = read_log(out_dir)
    train, evals = split_rows(rows, "train"), split_rows(rows, "eval")
    fig, axes = new_figure(2, 3, 4.2, 3.2)
    panels = [("loss", ["loss"]), ("implicit rewards", ["rewards/chosen", "rewards/rejected"]),
              ("reward margin (chosen - rejected)", ["rewards/margins"]),
              ("preference accuracy", ["rewards/accuracies"]),
              ("summed log-prob of the completion", ["logps/chosen", "logps/rejected"])]
    for ax, (title, keys) in zip(axes.flat, panels):
        for k, key in enumerate(keys):
            color = f"C{k}"
            plot_metric(ax, train, key, f"{key} (train)", color=color, alpha=0.7)
            plot_metric(ax, evals, key, f"{key} (val)", color=color, marker="o", linestyle="--")
        ax.set(title=title, xlabel="iteration")
        ax.legend(fontsize=7)
    axes[0, 1].axhline(0, color="grey", linewidth=0.8)
    plot_overall_accuracy(axes[1, 2], evals)
    return fig


def grpo_curves(out_dir):
    """train_grpo.py's rollout statistics per step: reward mean +- std, the share of groups whose rewards are
    all equal (no gradient) and of those dynamic sampling dropped, the k3 KL to the reference (logged only
    when beta > 0), the policy's entropy, completion lengths, and greedy accuracy on held-out problems."""
    rows = read_log(out_dir)
    train, evals = split_rows(rows, "train", "reward_mean"), split_rows(rows, "eval")
    fig, axes = new_figure(2, 3, 4.2, 3.2)
    iters = np.array([r["iter"] for r in train])
    mean, std = np.array([r["reward_mean"] for r in train]), np.array([r["reward_std"] for r in train])
    ax = axes[0, 0]
    ax.plot(iters, mean, label="mean")
    ax.fill_between(iters, mean - std, mean + std, alpha=0.25, label="+- std")
    ax.set(title="reward of the rollouts", xlabel="iteration")
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    plot_metric(ax, train, "zero_std_frac", "all rewards equal")
    plot_metric(ax, train, "dropped_frac", "dropped by dynamic sampling", linestyle="--")
    ax.set(title="zero-variance groups", xlabel="iteration", ylim=(-0.03, 1.03))
    ax.legend(fontsize=7)
    for ax, key, title in ((axes[0, 2], "kl", "KL to the reference (k3)"), (axes[1, 0], "entropy", "entropy")):
        plot_metric(ax, train, key, key)
        ax.set(title=title, xlabel="iteration")
    if not any("kl" in r for r in train):
        axes[0, 2].text(0.5, 0.5, "not logged: beta = 0,\nso there is no reference", ha="center", va="center",
                        transform=axes[0, 2].transAxes)
    ax = axes[1, 1]
    plot_metric(ax, train, "length_mean", "mean")
    plot_metric(ax, train, "length_max", "max", linestyle="--")
    ax.set(title="completion length (tokens)", xlabel="iteration")
    ax.legend(fontsize=7)
    plot_overall_accuracy(axes[1, 2], evals)
    return fig

# -----------------------------------------------------------------------------
# evaluation


def stage_accuracy_bars(results, title="greedy exact match with 95% CI"):
    """Greedy accuracy per task type and overall, a bar per checkpoint, with eval.py's 95% bootstrap CIs as
    whiskers. results: eval.py's results dict, the path of its results.json, or a list of either."""
    checkpoints = [c for r in results_list(results) for c in r["checkpoints"]]
    groups = [g for g in checkpoints[0]["metrics"] if g != "ungraded"]
    fig, axes = new_figure(1, 1, max(7.0, 1.1 * len(groups) * max(1, len(checkpoints) / 3)), 3.8)
    ax = axes[0, 0]
    width = 0.8 / len(checkpoints)
    for k, c in enumerate(checkpoints):
        metrics = [c["metrics"][g] for g in groups]
        acc = np.array([m["acc"] for m in metrics])
        whiskers = np.array([[a - m["ci"][0], m["ci"][1] - a] for a, m in zip(acc, metrics)]).T   # (2, groups)
        ax.bar(np.arange(len(groups)) + k * width, acc, width, yerr=whiskers, capsize=2, label=c["name"])
    ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2, groups, rotation=30, ha="right")
    ax.set(title=title, ylabel="accuracy", ylim=(0, 1.05))
    ax.legend(fontsize=8)
    return fig


def length_curves(results, title="greedy exact match by length, 95% CI"):
    """Accuracy against the number of digits (tasks.problem_length), a panel per task type and a line per
    checkpoint, with eval.py's 95% bootstrap CIs as a band; a dotted line marks the longest trained operand.
    results: eval.py's results dict (of test_length, say), the path of its results.json, or a list of either."""
    checkpoints = [c for r in results_list(results) for c in r["checkpoints"]]
    groups = list(checkpoints[0]["by_length"])
    cols = 4
    fig, axes = new_figure((len(groups) + cols - 1) // cols, cols, 3.2 * cols, 2.6 * ((len(groups) + cols - 1) // cols))
    for ax, group in zip(axes.flat, groups):
        for c in checkpoints:
            cells = c["by_length"][group]
            lengths = sorted(cells, key=int)
            acc = np.array([cells[n]["acc"] for n in lengths])
            lo, hi = (np.array([cells[n]["ci"][k] for n in lengths]) for k in (0, 1))
            x = [int(n) for n in lengths]
            ax.plot(x, acc, marker="o", ms=3, label=c["name"])
            ax.fill_between(x, lo, hi, alpha=0.15)
        box = checkpoints[0].get("box") or {}
        trained = [max(hi for _, hi in d) for t, d in box.items() if t == group or group == "overall"]
        if trained:
            ax.axvline(max(trained) + 0.5, color="gray", ls=":", lw=1)
        ax.set(title=group, ylim=(-0.03, 1.03), xlabel="digits")
    for ax in axes.flat[len(groups):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title)
    return fig


def transcript_html(tokens, title=""):
    """An HTML line of generated tokens, each on a background from red (improbable) to green (probable)
    with its id and probability under it. tokens: [{"id", "text", "logprob"}], as in eval.py's
    transcripts.jsonl. Display it with IPython.display.HTML."""
    cmap = colormaps["RdYlGn"]   # its ends are dark: drawn at 60% opacity so that black text stays readable
    cells = []
    for t in tokens:
        p = float(np.exp(t["logprob"]))
        r, g, b, _ = cmap(p)
        text = html.escape(t["text"]).replace(" ", "&nbsp;") or "&nbsp;"
        style = (f"display:inline-block; text-align:center; margin:1px; padding:1px 3px; border-radius:3px; "
                 f"background:rgba({255 * r:.0f},{255 * g:.0f},{255 * b:.0f},0.6)")
        cells.append(f'<span title="id {t["id"]}, p={p:.3f}" style="{style}">'
                     f'{text}<br><span style="font-size:65%">{t["id"]}<br>{p:.2f}</span></span>')
    heading = f'<div style="font-weight:bold">{html.escape(title)}</div>' if title else ""
    return f'<div style="font-family:monospace; color:black; margin-bottom:8px">{heading}{"".join(cells)}</div>'


def count_error_kinds(results):
    """{checkpoint name: Counter of tasks.classify_error kinds over its greedy completions}, "correct" included."""
    counts = {}
    for r in results_list(results):
        problems = [Problem(p["type"], p["prompt"], p["answer"]) if p["answer"] is not None else None
                    for p in r["problems"]]
        for c in r["checkpoints"]:
            counts[c["name"]] = Counter(classify_error(p, text) for p, text in zip(problems, c["completions"]) if p)
    return counts


def error_kinds(results):
    """The share of problems each checkpoint gets wrong in each way (tasks.classify_error: format,
    wrong_operation, carry, off_by_one, off_by_ten, other), most frequent kinds first; the bars of a
    checkpoint add up to its error rate."""
    counts = count_error_kinds(results)
    totals = Counter()
    for c in counts.values():
        totals.update({k: v for k, v in c.items() if k != "correct"})
    kinds = [k for k, _ in totals.most_common()]
    fig, axes = new_figure(1, 1, max(6.0, 1.2 * len(kinds) * max(1, len(counts) / 3)), 3.5)
    ax = axes[0, 0]
    width = 0.8 / len(counts)
    for j, (name, c) in enumerate(counts.items()):
        n = sum(c.values())
        ax.bar(np.arange(len(kinds)) + j * width, [c[k] / n for k in kinds], width, label=name)
    ax.set_xticks(np.arange(len(kinds)) + 0.4 - width / 2, kinds)
    ax.set(title="how the answers are wrong", ylabel="share of problems")
    ax.legend(fontsize=8)
    return fig

# -----------------------------------------------------------------------------
# the report card


def save_report_plots(out_root, plots_dir):
    """loss_curves.png, stage_accuracy.png, stage_accuracy_uniform.png, length.png, dpo.png and grpo.png in
    plots_dir from the runs under out_root (pretrain, sft, dpo, grpo with their log.jsonl; eval/, eval_uniform/
    and eval_length/ with results.json); a plot whose runs are missing is skipped. Returns the paths written."""
    def has_log(stage):
        path = os.path.join(out_root, stage, "log.jsonl")
        return os.path.exists(path) and os.path.getsize(path) > 0

    figures = {}
    loss_runs = {s: os.path.join(out_root, s) for s in ("pretrain", "sft") if has_log(s)}
    if loss_runs:
        figures["loss_curves.png"] = loss_curves(loss_runs)
    for name, eval_dir, title in (("stage_accuracy.png", "eval", "test"),
                                  ("stage_accuracy_uniform.png", "eval_uniform", "test_uniform: operands uniform")):
        results = os.path.join(out_root, eval_dir, "results.json")
        if os.path.exists(results):
            figures[name] = stage_accuracy_bars(results, f"greedy exact match with 95% CI, {title}")
    results = os.path.join(out_root, "eval_length", "results.json")
    if os.path.exists(results):
        figures["length.png"] = length_curves(results)
    for stage, plot in (("dpo", dpo_curves), ("grpo", grpo_curves)):
        if has_log(stage):
            figures[f"{stage}.png"] = plot(os.path.join(out_root, stage))
    os.makedirs(plots_dir, exist_ok=True)
    written = []
    for name, fig in figures.items():
        written.append(os.path.join(plots_dir, name))
        fig.savefig(written[-1], dpi=120)
    return written
