"""The quick start works as written: `bash speedrun.sh --tiny` runs every stage of the pipeline with the
commands the README lists, on the tiny configs, in a copy of the repository, and writes the report card."""
import glob
import os
import shutil
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ("machine", "data", "pretrain", "sft", "pairs", "dpo", "grpo", "eval", "eval_uniform", "eval_length")


def test_the_tiny_speedrun_runs_every_stage_and_writes_the_report(tmp_path):
    for path in glob.glob(os.path.join(ROOT, "*.py")) + [os.path.join(ROOT, "speedrun.sh")]:
        shutil.copy(path, tmp_path)
    shutil.copytree(os.path.join(ROOT, "config"), tmp_path / "config")
    out = subprocess.run(["bash", "speedrun.sh", "--tiny"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert sorted(os.listdir(tmp_path / "out" / "tiny" / ".done")) == sorted(STAGES)
    report = (tmp_path / "out" / "tiny" / "report.md").read_text()
    assert "| matmul speed |" in report and "GFLOP/s bfloat16" in report
    assert all(f"| {stage} |" in report for stage in STAGES)
    assert "| task | n | pretrain | sft | dpo | grpo | delta (grpo - pretrain) |" in report
    assert "The grpo checkpoint is the average 0.75 x its trained weights + 0.25 x out/tiny/dpo/ckpt.pt" in report
    assert "![loss_curves.png](plots/loss_curves.png)" in report and (tmp_path / "out/tiny/plots/grpo.png").exists()
    assert "## Accuracy by length (test_length.jsonl)" in report and "| grpo | 1 digits | 2 digits | 3 digits | 4 digits |" in report
    assert "]* |" in report                                   # lengths past the box are marked
    assert (tmp_path / "out/tiny/plots/length.png").exists()
    assert not (tmp_path / "report.md").exists() and not (tmp_path / "out" / "pretrain").exists()   # small's, untouched
