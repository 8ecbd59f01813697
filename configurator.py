"""
Karpathy-style configuration. A script keeps its defaults as module globals and calls

    configure(globals())

which applies, in order, every config file named on the command line
(`python train_sft.py config/sft_small.py`) and every `--key=value` override.
Values are parsed with ast.literal_eval (so `--lr=3e-4`, `--compile=True`,
`--types=('add','sub')`) and must have the type of the default they replace;
a plain word that is not a Python literal is taken as a string (`--device=cpu`), and so is
any text given to a string key (`--out_dir=2024`). None is accepted only where the default is None.
Then every key is checked against the ranges below, shared by all the scripts.
Anything wrong exits with a one-line message that names the key.
"""
import ast
import sys

# the ranges of the keys the scripts share, by name: a key means the same thing in every script
AT_LEAST = {
    # sizes, counts, intervals, accumulation
    "batch_size": 1, "block_size": 1, "window": 1, "gradient_accumulation_steps": 1, "eval_interval": 1, "log_interval": 1,
    "eval_iters": 1, "max_new_tokens": 1, "n_layer": 1, "n_head": 1, "n_embd": 1, "n_eval_problems": 1,
    "n_val_pairs": 1, "prompts_per_step": 1, "max_sampling_rounds": 1, "num_iterations": 1, "sft_batch_size": 1,
    "policy_samples": 1, "steps": 1, "gen_batch_size": 1, "gen_tokens": 1,
    # 0 means "off", "all" or "the default" (see each script)
    "n_kv_head": 0, "max_iters": 0, "warmup_iters": 0, "lr_decay_iters": 0, "n_per_type": 0, "num_samples": 0,
    "n_transcripts": 0, "top_k": 0, "temperature": 0, "policy_temperature": 0, "min_lr": 0, "weight_decay": 0,
    "grad_clip": 0, "dropout": 0, "rollout_slack": 0, "policy_prompts": 0, "policy_box_prompts": 0,
    "edge_lengths": 0, "box_lengths": 0,
}


def _config_keys(g):
    # config keys are the lowercase globals of simple types; UPPERCASE ones are constants
    return {k: v for k, v in g.items() if not k.startswith("_") and not k.isupper()
            and isinstance(v, (int, float, bool, str, tuple, list, dict, type(None)))}


def _check_type(key, value, default, source):
    if value is None and default is not None:
        raise SystemExit(f"config error ({source}): {key} cannot be None; its default is {default!r}")
    if default is None:
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # --lr=1 means 1.0
    if type(value) is not type(default):
        raise SystemExit(f"config error ({source}): {key} must be {type(default).__name__} "
                         f"like the default {default!r}, got {type(value).__name__} {value!r}")
    return value


def configure(g, argv=None):
    """Override the script's globals `g` in place; returns the final config as a dict (for checkpoints and logs)."""
    argv = sys.argv[1:] if argv is None else argv
    defaults = _config_keys(g)
    valid = ", ".join(sorted(defaults))
    for arg in argv:
        if not arg.startswith("--"):
            try:
                with open(arg) as f:
                    source = f.read()
            except OSError:
                raise SystemExit(f"config error: config file {arg!r} not found (or pass overrides as --key=value)")
            file_globals = {}
            try:
                exec(compile(source, arg, "exec"), file_globals)
            except Exception as e:
                raise SystemExit(f"config error in {arg}: {type(e).__name__}: {e}")
            for key, value in file_globals.items():
                if key.startswith("_") or key in ("__builtins__",) or callable(value) or type(value).__name__ == "module":
                    continue
                if key not in defaults:
                    raise SystemExit(f"config error ({arg}): unknown key {key!r}; valid keys: {valid}")
                g[key] = _check_type(key, value, defaults[key], arg)
        else:
            key, eq, raw = arg[2:].partition("=")
            if not eq:
                raise SystemExit(f"config error: {arg!r} must look like --key=value")
            if key not in defaults:
                raise SystemExit(f"config error: unknown key {key!r}; valid keys: {valid}")
            try:
                value = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                value = raw  # a bare word such as --device=cpu or --ckpt=out/sft/ckpt.pt
            if isinstance(defaults[key], str) and value is not None and not isinstance(value, str):
                value = raw  # a string key takes number-like text as text: --out_dir=2024
            g[key] = _check_type(key, value, defaults[key], arg)
    config = {k: g[k] for k in defaults}
    check_ranges(config)
    return config


def check_ranges(config):
    """Every shared key within its range (AT_LEAST above; top_p in (0, 1], dropout below 1)."""
    for key, low in AT_LEAST.items():
        if isinstance(config.get(key), (int, float)) and config[key] < low:
            raise SystemExit(f"config error: {key} must be >= {low}, got {config[key]!r}")
    if "top_p" in config and not 0 < config["top_p"] <= 1:
        raise SystemExit(f"config error: top_p must be in (0, 1], got {config['top_p']!r}")
    if "dropout" in config and not config["dropout"] < 1:
        raise SystemExit(f"config error: dropout must be below 1, got {config['dropout']!r}")
    if "learning_rate" in config and not config["learning_rate"] > 0:
        raise SystemExit(f"config error: learning_rate must be > 0, got {config['learning_rate']!r}")
