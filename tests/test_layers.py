"""The dependency graph is one way: library modules (tokenizer, tasks, model, common, batches, ...) sit below the
stage scripts, which sit below report.py, plots.py, notebook_runs.py, bench_peers.py and the notebooks. A learner
can copy one stage script and the library modules below it, and nothing else."""
import ast
import glob
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = {"train_pretrain", "train_sft", "train_dpo", "train_grpo", "generate_pairs", "eval", "sample", "bench"}
TOP = {"report", "plots", "notebook_runs", "bench_peers"}
MODULES = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "*.py"))}
LIBRARY = MODULES - STAGES - TOP


def imported(module):
    """The repository modules a module imports, at the top or inside a function."""
    tree = ast.parse(open(os.path.join(ROOT, f"{module}.py")).read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & MODULES


def test_the_layers_are_what_the_test_thinks():
    assert STAGES | TOP <= MODULES and {"tokenizer", "tasks", "model", "common", "batches"} <= LIBRARY


def test_no_stage_script_imports_another_stage_script_or_the_layer_above():
    for script in sorted(STAGES):
        upward = imported(script) & (STAGES | TOP) - {script}
        assert not upward, f"{script}.py imports {upward}"


def test_library_modules_import_only_library_modules():
    for module in sorted(LIBRARY):
        assert imported(module) <= LIBRARY, f"{module}.py imports {imported(module) - LIBRARY}"


def test_report_and_plots_import_no_stage_script():
    for module in ("report", "plots", "notebook_runs"):
        assert not imported(module) & STAGES, f"{module}.py imports {imported(module) & STAGES}"
