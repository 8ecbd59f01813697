"""
Karpathy-style configuration. A script keeps its defaults as module globals and calls

    configure(globals())

which applies, in order, every config file named on the command line
(`python train_sft.py config/sft_small.py`) and every `--key=value` override.
Values are parsed with ast.literal_eval (so `--lr=3e-4`, `--compile=True`,
`--types=('add','sub')`) and must have the type of the default they replace;
a plain word that is not a Python literal is taken as a string (`--device=cpu`).
Anything wrong exits with a one-line message that names the key.
"""
import ast
import sys


def _config_keys(g):
    # config keys are the lowercase globals of simple types; UPPERCASE ones are constants
    return {k: v for k, v in g.items() if not k.startswith("_") and not k.isupper()
            and isinstance(v, (int, float, bool, str, tuple, list, dict, type(None)))}


def _check_type(key, value, default, source):
    if default is None or value is None:
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
            g[key] = _check_type(key, value, defaults[key], arg)
    return {k: g[k] for k in defaults}
