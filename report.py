"""
The report card: writes report.md and plots/*.png from what speedrun.sh left in out/.

    python report.py

Environment, model size, tokens and wall-clock per stage, and the accuracy of every stage's checkpoint
per task type with 95% CIs, in distribution (test) and out of distribution (test_ood: longer operands).
"""
import json
import os
import platform

import torch

from common import load_checkpoint, markdown_table, model_from_checkpoint
from configurator import configure
from plots import save_report_plots

out_root = "out"
report_path = "report.md"
plots_dir = "plots"


def stage_rows():
    """(stage, seconds, tokens seen, checkpoint iteration) for every stage that finished."""
    rows = []
    for stage in ("data", "pretrain", "sft", "pairs", "dpo", "grpo", "eval", "eval_ood"):
        done = os.path.join(out_root, ".done", stage)
        if not os.path.exists(done):
            continue
        seconds = int(open(done).read().split()[1])
        ckpt_path = os.path.join(out_root, stage, "ckpt.pt")
        tokens, iters = "-", "-"
        if os.path.exists(ckpt_path):
            ckpt = load_checkpoint(ckpt_path)
            tokens = f"{ckpt['tokens_seen']:,}" if "tokens_seen" in ckpt else "-"
            iters = str(ckpt["iter_num"])
        rows.append((stage, seconds, tokens, iters))
    return rows


def environment():
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name()
    else:
        device = f"CPU ({platform.machine()}, {torch.get_num_threads()} torch threads)"
    model = "-"
    path = os.path.join(out_root, "pretrain", "ckpt.pt")
    if os.path.exists(path):
        ckpt = load_checkpoint(path)
        c = model_from_checkpoint(ckpt, "cpu")
        model = (f"{c.num_params() / 1e6:.2f}M parameters: {c.config.n_layer} layers, width {c.config.n_embd}, "
                 f"{c.config.n_head} heads, {c.config.pos} positions, block {c.config.block_size}")
    return [("device", device), ("torch", torch.__version__), ("CPU cores", str(os.cpu_count())),
            ("python", platform.python_version()), ("model", model)]


def accuracy_section(title, results_path):
    if not os.path.exists(results_path):
        return []
    with open(results_path) as f:
        results = json.load(f)
    return [f"## {title}", "", f"Greedy exact match, % with 95% bootstrap CIs; {results_path}.", "",
            markdown_table(results), ""]


def main():
    configure(globals())
    rows = stage_rows()
    lines = ["# nanomath report card", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in environment()]
    lines += ["", "## Stages", "", "| stage | wall-clock s | tokens seen | iterations |", "|---|---:|---:|---:|"]
    lines += [f"| {s} | {sec} | {tok} | {it} |" for s, sec, tok, it in rows]
    lines += [f"| **total** | **{sum(r[1] for r in rows)}** | | |", ""]
    lines += accuracy_section("Accuracy in distribution (test.jsonl)", os.path.join(out_root, "eval", "results.json"))
    lines += accuracy_section("Accuracy out of distribution (test_ood.jsonl: one digit longer)",
                              os.path.join(out_root, "eval_ood", "results.json"))
    written = save_report_plots(out_root, plots_dir)
    lines += ["## Plots", ""] + [f"![{os.path.basename(p)}]({p})" for p in written]
    with open(report_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {report_path} and {len(written)} plots in {plots_dir}/")


if __name__ == "__main__":
    main()
