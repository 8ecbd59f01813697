"""
Where the notebooks find their runs: the speedrun's outputs (data/small, out/<stage>) when they exist, or a
tiny pipeline of their own (0.1M parameters, config/data_tiny.py, under a minute on a CPU) under
NANOMATH_WORKDIR (default: a fixed temp dir, so that the notebooks share one tiny run). NANOMATH_TINY=1, set
by the notebook tests, forces the tiny pipeline.
"""
import os
import shutil
import subprocess
import sys
import tempfile

STAGES = ("pretrain", "sft", "dpo", "grpo")

ROOT = os.path.dirname(os.path.abspath(__file__))


def tiny_mode():
    """NANOMATH_TINY=1 (the notebook tests set it): the tiny pipeline even when the speedrun's outputs exist."""
    return os.environ.get("NANOMATH_TINY", "0") not in ("", "0")


def workdir():
    return os.environ.get("NANOMATH_WORKDIR") or os.path.join(tempfile.gettempdir(), "nanomath_notebooks")


def speedrun_stages():
    """The stages whose checkpoints the speedrun left under out/ (none without data/small or in tiny mode)."""
    if tiny_mode() or not os.path.exists(os.path.join(ROOT, "data", "small", "meta.json")):
        return []
    return [s for s in STAGES if os.path.exists(os.path.join(ROOT, "out", s, "ckpt.pt"))]


def run(script, *args, threads=None):
    """Run one of the repository's scripts as from the command line; print the command and its last lines.
    threads sets OMP_NUM_THREADS (the tiny runs use 1: for 0.1M-parameter models threads cost more than
    they save)."""
    print("$ python " + " ".join([script, *args]))
    env = dict(os.environ) | ({"OMP_NUM_THREADS": str(threads)} if threads else {})
    out = subprocess.run([sys.executable, script, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    if out.returncode != 0:
        raise RuntimeError(f"{script} failed:\n" + "\n".join(lines[-20:]) + "\n" + out.stderr[-3000:])
    print("  " + "\n  ".join(lines[-2:]))


def tiny_commands(root):
    """{stage: (the stage it starts from, its command but for --out_dir)} of the tiny pipeline under root:
    the config/*_tiny.py runs (a 0.1M-parameter model, 2 layers, width 64, on config/data_tiny.py), on the CPU."""
    out = os.path.join(root, "out")
    common = [f"--data_dir={os.path.join(root, 'data', 'tiny')}", "--device=cpu"]
    return {
        "pretrain": (None, ["train_pretrain.py", "config/pretrain_tiny.py", *common]),
        "sft": ("pretrain", ["train_sft.py", "config/sft_tiny.py", *common, f"--init_from={out}/pretrain/ckpt.pt"]),
        # the synthetic pairs: on-policy ones would need the mining stage of `bash speedrun.sh --tiny`
        "dpo": ("sft", ["train_dpo.py", "config/dpo_tiny.py", *common, f"--init_from={out}/sft/ckpt.pt",
                        "--pairs_file=pairs_train.jsonl", "--max_iters=40", "--eval_interval=20", "--log_interval=2"]),
        # a tiny model gets nearly every answer wrong: dynamic sampling would find no group to keep
        "grpo": ("sft", ["train_grpo.py", "config/grpo_tiny.py", *common, f"--init_from={out}/sft/ckpt.pt",
                         "--max_iters=10", "--eval_interval=5"]),
    }


def outputs(*stages):
    """{"data": data_dir, "out": out root, stage: out_dir, ...} for the stages asked for. The speedrun's when
    data/small and every one of their checkpoints exist (and NANOMATH_TINY is not set); otherwise the tiny
    pipeline's under workdir(), whose missing stages (and the stages they start from) are made now. A stage
    trains into out/<stage>.partial, renamed when it is done, so that an interrupted run is never taken for a
    finished one (generate_pairs.py writes meta.json last, which does the same for the data)."""
    small = os.path.join(ROOT, "data", "small")
    if not tiny_mode() and os.path.exists(os.path.join(small, "meta.json")) and set(stages) <= set(speedrun_stages()):
        out = os.path.join(ROOT, "out")
        return {"data": small, "out": out} | {s: os.path.join(out, s) for s in stages}
    root = workdir()
    data, out = os.path.join(root, "data", "tiny"), os.path.join(root, "out")
    if not os.path.exists(os.path.join(data, "meta.json")):
        run("generate_pairs.py", "config/data_tiny.py", f"--out_root={os.path.dirname(data)}", threads=1)
    commands = tiny_commands(root)

    def make(stage):
        start, command = commands[stage]
        if start:
            make(start)
        if not os.path.exists(os.path.join(out, stage, "ckpt.pt")):
            partial = os.path.join(out, f"{stage}.partial")
            shutil.rmtree(partial, ignore_errors=True)   # an interrupted attempt: start it over
            run(*command, f"--out_dir={partial}", threads=1)
            shutil.rmtree(os.path.join(out, stage), ignore_errors=True)
            os.replace(partial, os.path.join(out, stage))
            print(f"  renamed {stage}.partial to {os.path.join(out, stage)}")
    for stage in stages:
        make(stage)
    return {"data": data, "out": out} | {s: os.path.join(out, s) for s in stages}
