"""
The report card: writes report.md and plots/*.png from what speedrun.sh left in out/.

    python report.py
    python report.py --measure=True     # only record this machine's matmul speed in out/machine.json

Environment, the machine's measured speed, model size, tokens and wall-clock per stage, and the accuracy of
every stage's checkpoint per task type with 95% CIs: on test (digit counts first, as in training), on
test_uniform (operands uniform over all numbers of the box) and by length on test_length (up to twice the
longest trained operand). Stage times from different machines compare only next to the machine's speed:
speedrun.sh measures it first, before any stage runs (a fp32 and a bf16 matmul, a few seconds).
"""
import json
import os
import platform

import torch

from common import load_checkpoint, length_table, markdown_table, matmul_flops, model_from_checkpoint, pick_device
from configurator import configure
from plots import save_report_plots

out_root = "out"
report_path = "report.md"
plots_dir = "plots"
measure = False


def measure_machine(path):
    """GFLOP/s of a 1024x1024 matmul in float32 and bfloat16 on the device the stages use, to path."""
    device = pick_device("auto")
    speed = {"device": device} | {dtype: matmul_flops(dtype, device, 1.0) / 1e9 for dtype in ("float32", "bfloat16")}
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(speed, f)
    print(f"{device}: a 1024x1024 matmul runs at {speed['float32']:,.0f} GFLOP/s in float32, "
          f"{speed['bfloat16']:,.0f} in bfloat16 -> {path}")


def stage_rows(out_root):
    """(stage, seconds, tokens seen, checkpoint iteration) for every stage that finished."""
    rows = []
    for stage in ("machine", "data", "pretrain", "sft", "pairs", "dpo", "grpo", "eval", "eval_uniform", "eval_length"):
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


def environment(out_root):
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
    speed = "-"
    path = os.path.join(out_root, "machine.json")
    if os.path.exists(path):
        with open(path) as f:
            m = json.load(f)
        speed = (f"{m['float32']:,.0f} GFLOP/s float32, {m['bfloat16']:,.0f} GFLOP/s bfloat16 ({m['device']}, "
                 "a 1024x1024 matmul, measured before the first stage)")
    return [("device", device), ("matmul speed", speed), ("torch", torch.__version__),
            ("CPU cores", str(os.cpu_count())), ("python", platform.python_version()), ("model", model)]


def average_note(out_root):
    """A line saying that GRPO's checkpoint is an average (train_grpo.py's average_weight), with the trained
    weights' and the average's greedy accuracy on the validation problems GRPO evaluates on (its log)."""
    path = os.path.join(out_root, "grpo", "ckpt.pt")
    if not os.path.exists(path) or "average_with" not in (ckpt := load_checkpoint(path)):
        return []
    weight = ckpt["config"]["average_weight"]
    log = [json.loads(line) for line in open(os.path.join(out_root, "grpo", "log.jsonl"))]
    trained = [r for r in log if r["split"] == "eval"][-1]["accuracy"]["overall"]
    average = [r for r in log if r["split"] == "average"][-1]["accuracy"]["overall"]
    return [f"The grpo checkpoint is the average {weight:g} x its trained weights + {1 - weight:g} x "
            f"{ckpt['average_with']} (WiSE-FT, train_grpo.py's average_weight): greedy accuracy on the validation "
            f"problems of its log {100 * trained:.1f}% trained, {100 * average:.1f}% averaged.", ""]


def accuracy_section(title, results_path, by_length=False):
    """The accuracy table of an eval.py results.json; by_length: a table by length for every checkpoint."""
    if not os.path.exists(results_path):
        return []
    with open(results_path) as f:
        results = json.load(f)
    lines = [f"## {title}", "", f"Greedy exact match, % with 95% bootstrap CIs; {results_path}.", ""]
    if not by_length:
        return lines + [markdown_table(results), ""]
    lines += ["A row per task type, a column per length (the digits of the longest operand); * marks a length",
              "longer than any trained operand.", ""]
    return lines + [x for c in results["checkpoints"] for x in (length_table(c, c.get("box")), "")]


def main():
    configure(globals())
    if measure:
        return measure_machine(os.path.join(out_root, "machine.json"))
    rows = stage_rows(out_root)
    lines = ["# nanomath report card", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in environment(out_root)]
    lines += ["", "## Stages", "", "| stage | wall-clock s | tokens seen | iterations |", "|---|---:|---:|---:|"]
    lines += [f"| {s} | {sec} | {tok} | {it} |" for s, sec, tok, it in rows]
    lines += [f"| **total** | **{sum(r[1] for r in rows)}** | | |", ""] + average_note(out_root)
    lines += accuracy_section("Accuracy in distribution (test.jsonl)", os.path.join(out_root, "eval", "results.json"))
    lines += accuracy_section("Accuracy with operands uniform over all numbers (test_uniform.jsonl)",
                              os.path.join(out_root, "eval_uniform", "results.json"))
    lines += accuracy_section("Accuracy by length (test_length.jsonl)", os.path.join(out_root, "eval_length",
                                                                                    "results.json"), by_length=True)
    written = save_report_plots(out_root, plots_dir)
    here = os.path.dirname(report_path) or "."
    lines += ["## Plots", ""] + [f"![{os.path.basename(p)}]({os.path.relpath(p, here)})" for p in written]
    with open(report_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {report_path} and {len(written)} plots in {plots_dir}/")


if __name__ == "__main__":
    main()
