"""
Plumbing shared by the stage scripts: device, precision and DDP setup, the learning-rate schedule, the
optimizer step, atomic checkpoints and the models they hold, log.jsonl, JSONL input; and eval.py's accuracy
table, which the report card prints too (batches and generation: generation.py). The interesting part of each stage (its data, its loss, its loop) stays in its own script.
"""
import copy
import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, asdict

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from lora import add_lora, adapter_state, is_adapted, load_adapters, unload
from model import GPT, GPTConfig
from tasks import problem_from_row


# -----------------------------------------------------------------------------
# device, precision, DDP

@dataclass
class Runtime:
    device: str
    device_type: str
    dtype: str
    autocast: object        # context manager: with rt.autocast: forward passes
    ddp: bool
    rank: int
    local_rank: int
    world_size: int
    master: bool            # rank 0 logs, evaluates and writes checkpoints


def pick_device(device):
    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def auto_dtype(device_type, ddp=False):
    """bfloat16 on a GPU that has it. On a CPU, bfloat16 only where this machine's bf16 matmul is clearly
    faster than its fp32 one (1.2x or more, timed here for a fraction of a second): bf16 instructions alone do
    not say. AMX tiles, or AVX512-BF16 on AMD EPYC, trained bench.py's shape 1.6x or more faster in bf16, but a
    Xeon VM that reports AVX512-BF16 without AMX ran bf16 matmuls at half its fp32 speed and trained 1.4x
    slower in bf16 (README: Benchmarks). Under DDP rank 0's choice holds for every rank."""
    if device_type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    if device_type != "cpu":
        return "float32"
    caps = torch.cpu.get_capabilities()
    has_bf16 = any(caps.get(k, False) for k in ("avx512_bf16", "amx_bf16", "bf16"))
    faster = has_bf16 and matmul_flops("bfloat16", "cpu", 0.1, 512) >= 1.2 * matmul_flops("float32", "cpu", 0.1, 512)
    if ddp:
        choice = torch.tensor([int(faster)])
        dist.broadcast(choice, 0)
        faster = bool(choice.item())
    return "bfloat16" if faster else "float32"


def setup(device="auto", dtype="auto", seed=1337):
    """Picks the device and precision, joins the DDP group when launched by torchrun (nccl on CUDA,
    gloo on CPU), seeds every rank differently and returns a Runtime."""
    ddp = int(os.environ.get("RANK", -1)) != -1
    rank, local_rank, world_size = 0, 0, 1
    device = pick_device(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"device={device!r} but this torch has no CUDA device: use --device=cpu (or auto)")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise SystemExit("device='mps' but MPS is not available here: use --device=cpu (or auto)")
    if ddp:
        rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
        world_size = int(os.environ["WORLD_SIZE"])
        if device.startswith("cuda"):
            device = f"cuda:{local_rank}"
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    device_type = "cuda" if device.startswith("cuda") else device
    if dtype == "auto":
        dtype = auto_dtype(device_type, ddp)
    if dtype not in ("float32", "bfloat16", "float16"):
        raise SystemExit(f"dtype={dtype!r}; allowed: auto, float32, bfloat16, float16")
    if dtype == "float16" and device_type != "cuda":
        raise SystemExit("dtype='float16' needs CUDA (it needs a grad scaler there); use bfloat16 or float32")
    torch.manual_seed(seed + rank)
    if device_type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    ptdtype = getattr(torch, dtype)
    ctx = nullcontext() if dtype == "float32" else torch.autocast(device_type=device_type, dtype=ptdtype)
    return Runtime(device, device_type, dtype, ctx, ddp, rank, local_rank, world_size, rank == 0)


def zero_unused_tokens(model, token_ids):
    """Zero the embedding rows of token_ids and keep them zero while training (their gradient is dropped;
    AdamW's decay keeps a zero a zero). A row that no training token uses is otherwise whatever the random
    init and the output softmax left in it, which a model reads as some word; a zero row reads as nothing.
    With tied embeddings the output logit of such a token stays 0."""
    if not token_ids:
        return
    weight = model.transformer.wte.weight
    rows = torch.tensor(token_ids, device=weight.device)
    with torch.no_grad():
        weight[rows] = 0
    if weight.requires_grad:                  # not under LoRA, whose base is frozen anyway
        weight.register_hook(lambda grad: grad.index_fill(0, rows, 0))


def wrap_model(model, rt, compile=False):
    """torch.compile and DDP wrapping; returns (model to call in training, the raw module)."""
    raw = model
    if compile:
        model = torch.compile(model)
    if rt.ddp:
        model = DDP(model, device_ids=[rt.local_rank] if rt.device_type == "cuda" else None)
    return model, raw


def teardown(rt):
    if rt.ddp:
        # every rank reaches the barrier before any tears gloo down: a rank that destroys the group while
        # another is still in its last collective aborts that one ("terminate called without an active exception")
        dist.barrier()
        dist.destroy_process_group()


def sync_context(model, micro_step, grad_accum_steps):
    """Under DDP, all-reduce gradients only on the last micro-step of an accumulation."""
    if isinstance(model, DDP) and micro_step < grad_accum_steps - 1:
        return model.no_sync()
    return nullcontext()


def check_grad_accum(grad_accum_steps, rt):
    """Each rank does grad_accum_steps / world_size micro-steps, so the global batch does not
    depend on how many processes share it."""
    if grad_accum_steps % rt.world_size:
        raise SystemExit(f"gradient_accumulation_steps={grad_accum_steps} must divide by the "
                         f"{rt.world_size} DDP processes")
    return grad_accum_steps // rt.world_size


# -----------------------------------------------------------------------------
# optimisation

def get_lr(it, learning_rate, min_lr, warmup_iters, lr_decay_iters):
    """Linear warmup, then cosine decay to min_lr at lr_decay_iters, then flat."""
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    ratio = (it - warmup_iters) / max(1, lr_decay_iters - warmup_iters)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (learning_rate - min_lr)


def optimizer_step(model, optimizer, lr, grad_clip):
    """Set the learning rate, clip, step, zero the grads; returns the gradient norm before clipping."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip > 0 else float("inf"))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return norm.item()


_PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12, "4090": 165e12}


def peak_flops(rt):
    """The device's peak for MFU. GPUs: the datasheet's dense bf16 figure. CPUs have no datasheet number
    we can read, so we measure a large matmul in the training dtype: MFU on CPU is relative to that."""
    if rt.device_type == "cuda":
        name = torch.cuda.get_device_name()
        return next((v for k, v in _PEAK_FLOPS.items() if k in name), None)
    if rt.device_type != "cpu":
        return None
    return matmul_flops(rt.dtype, "cpu", 0.3)


def matmul_flops(dtype, device, seconds, n=1024):
    """FLOP/s of an (n, n) @ (n, n) matmul in dtype on device, timed for about `seconds`."""
    a = torch.randn(n, n, dtype=getattr(torch, dtype), device=device)
    a @ a  # warm up
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t0, reps = time.time(), 0
    while time.time() - t0 < seconds:
        a @ a
        reps += 1
    sync()
    return 2 * n ** 3 * reps / (time.time() - t0)


# -----------------------------------------------------------------------------
# checkpoints

def save_checkpoint(path, **payload):
    """Atomic: write a temp file, then rename over the old one, so a run killed mid-write never leaves
    a corrupt checkpoint. The payload holds only tensors and plain types so weights_only loading works."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path, device="cpu"):
    if not os.path.exists(path):
        raise SystemExit(f"checkpoint not found: {path} (train the earlier stage first, or pass --ckpt=...)")
    if os.path.getsize(path) == 0:
        raise SystemExit(f"could not load checkpoint {path}: the file is empty (0 bytes)")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        message = str(e).strip().splitlines()
        raise SystemExit(f"could not load checkpoint {path}: {type(e).__name__}"
                         + (f": {message[0]}" if message else ""))
    weights = ("adapters", "lora") if isinstance(ckpt, dict) and "adapters" in ckpt else ("model",)   # lora.py
    missing = [k for k in (*weights, "model_args", "tokenizer") if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise SystemExit(f"{path} is not a checkpoint of nanomath's training scripts: no {', '.join(missing)}")
    if "lora" in weights and not os.path.exists(ckpt["lora"]["base"]):
        raise SystemExit(f"{path} holds LoRA adapters of the base checkpoint {ckpt['lora']['base']}, which is not "
                         "there: the adapters mean nothing without it; put it back, or run from the directory "
                         "the training ran in")
    return ckpt


def descends_from(path, ancestor, depth=8):
    """Whether the checkpoint at path is ancestor, or was trained from it: the init_from each checkpoint's config
    records (a resumed one's reference_from), followed back."""
    for _ in range(depth):
        if os.path.abspath(path) == os.path.abspath(ancestor):
            return True
        ckpt = load_checkpoint(path)
        parent = ckpt.get("config", {}).get("init_from")
        path = ckpt.get("reference_from") if parent == "resume" else parent
        if not path or not os.path.exists(path):
            return False
    return False


def model_from_checkpoint(ckpt, device, dropout=None, merge_lora=True):
    """The GPT a checkpoint holds. An adapter checkpoint (lora.py) is its base checkpoint plus the adapters:
    merged into a plain GPT (merge_lora), or kept apart as they trained, on a base quantized as it was."""
    if "adapters" in ckpt:
        settings = ckpt["lora"]
        model = model_from_checkpoint(load_checkpoint(settings["base"], device), device, dropout)
        shape = {k: v for k, v in ckpt["model_args"].items() if k != "dropout"}
        if {k: v for k, v in asdict(model.config).items() if k != "dropout"} != shape:
            raise SystemExit(f"the base checkpoint {settings['base']} is not the model its adapters trained on "
                             "(another shape): it was replaced since")
        load_adapters(add_lora(model, **settings), ckpt["adapters"], settings["base"])
        return unload(model) if merge_lora else model
    model_args = dict(ckpt["model_args"])
    if dropout is not None:
        model_args["dropout"] = dropout
    model = GPT(GPTConfig(**model_args))
    # torch.compile prefixes parameter names; strip it so compiled and eager checkpoints load alike
    state = {k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()}
    model.load_state_dict(state)
    return model.to(device)


def check_out_dir(out_dir, resuming, overwrite):
    """A fresh run does not replace the checkpoint (and log) of another run without being told to."""
    path = os.path.join(out_dir, "ckpt.pt")
    if os.path.exists(path) and not (resuming or overwrite):
        raise SystemExit(f"{path} exists: --init_from=resume continues that run, --overwrite=True replaces it, "
                         "or pass another --out_dir")


def start_model(init_from, out_dir, rt, dropout=0.0, stage=None, lora=None):
    """The starting point of a stage: init_from is "resume" (this stage's own out_dir/ckpt.pt, optimizer
    state and iteration included; it must have been written by the same stage) or the path of an earlier
    stage's checkpoint. lora: lora.settings' output; a fresh run then trains adapters on the checkpoint it
    starts from (an adapter checkpoint merged), a resumed one the adapters of its own checkpoint.
    Returns (model, checkpoint dict, resuming, the checkpoint's path)."""
    resuming = init_from == "resume"
    path = os.path.join(out_dir, "ckpt.pt") if resuming else init_from
    ckpt = load_checkpoint(path, rt.device)
    if resuming and ckpt.get("stage") != stage:
        raise SystemExit(f"{path} was not written by train_{stage}.py (its stage: {ckpt.get('stage', 'unknown')}): "
                         f"resume needs a {stage} checkpoint; to start from it, pass --init_from={path}")
    model = model_from_checkpoint(ckpt, rt.device, dropout, merge_lora=not resuming)
    if lora and not resuming:
        add_lora(model, path, **lora)
    return model, ckpt, resuming, path


def reference_model(model, resuming, reference_from, device):
    """DPO's and GRPO's frozen reference, the checkpoint the run started from. A LoRA policy is its own
    reference: its base, with the adapters off (lora.adapters_off, where the reference is used), so no
    second model is held. Otherwise a frozen copy of the model, reloaded from reference_from on a resume."""
    if is_adapted(model):
        return model
    reference = (model_from_checkpoint(load_checkpoint(reference_from, device), device, dropout=0.0)
                 if resuming else copy.deepcopy(model))
    return reference.eval().requires_grad_(False)


def checkpoint_payload(raw_model, optimizer, config, iter_num, meta, **extra):
    """What a checkpoint holds: weights, optimizer, model shape, config, iteration, and from the data's
    meta.json the tokenizer, the digit box it covered (sample.py and eval.py say when a problem is
    outside it) and its family (arithmetic, or word problems: sample.py frames a question as they were). A LoRA model writes an adapter checkpoint: its adapters and their settings (lora.py; the
    settings name the base checkpoint) in place of the weights."""
    weights = (dict(adapters=adapter_state(raw_model), lora=raw_model.lora_settings) if is_adapted(raw_model)
               else dict(model=raw_model.state_dict()))
    return dict(**weights, optimizer=optimizer.state_dict(),
                model_args=asdict(raw_model.config), config=config, iter_num=iter_num,
                tokenizer=meta["tokenizer"], box=meta.get("box"), family=meta.get("family", "arithmetic"), **extra)


def check_data(tokenizer_name, vocab_size, meta, ckpt_path, data_dir):
    """A model meets data: the data must be made with the model's tokenizer, and every id in it must have
    a row in the model's embedding (vocab_size)."""
    data_path = os.path.join(data_dir, "meta.json")
    if tokenizer_name != meta["tokenizer"]:
        raise SystemExit(f"tokenizer mismatch: checkpoint {ckpt_path} uses {tokenizer_name!r} but "
                         f"{data_path} was made with {meta['tokenizer']!r}; regenerate the data with "
                         f"--tokenizer={tokenizer_name} or use a matching checkpoint")
    if vocab_size < meta["vocab_size"]:
        raise SystemExit(f"vocabulary mismatch: checkpoint {ckpt_path} embeds {vocab_size} token ids but "
                         f"{data_path} has {meta['vocab_size']}; use a model made for this tokenizer")


# -----------------------------------------------------------------------------
# metrics and input files

class MetricsLog:
    """out_dir/log.jsonl, one JSON object per logged step, for the notebooks' plots. On resume the
    rows written after the last checkpoint are dropped, and so is the evaluation at the checkpoint's own
    step, which the resumed run repeats as its first act (and GRPO's average, which it writes again)."""

    def __init__(self, out_dir, resume_iter=None):
        self.path = os.path.join(out_dir, "log.jsonl")
        os.makedirs(out_dir, exist_ok=True)
        rows = []
        if resume_iter is not None and os.path.exists(self.path):
            with open(self.path) as f:
                lines = [line for line in f if line.strip()]
            for lineno, line in enumerate(lines, 1):
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    if lineno < len(lines):
                        raise SystemExit(f"{self.path}:{lineno}: malformed JSON ({e.msg})")
                    print(f"{self.path}: dropped the cut-off last line (the run was killed while writing it)")
        kept = [row for row in rows if row["iter"] < resume_iter
                or (row["iter"] == resume_iter and row.get("split") not in ("eval", "average"))]
        with open(self.path, "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in kept)

    def write(self, **row):
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


def read_jsonl(path, required=()):
    """Rows of a JSONL file; a malformed line or a missing key exits naming the file and line."""
    return [row for _, row in numbered_rows(path, required)]


def read_problems(path):
    """The tasks.Problem of every row of a JSONL file with Q, A and type (sft_val.jsonl, test.jsonl, ...);
    a row that states no problem exits naming the file and line."""
    return [problem_from_row(row, f"{path}:{lineno}") for lineno, row in numbered_rows(path, ("Q", "A", "type"))]


def numbered_rows(path, required=()):
    """(line number, row) of every non-blank line of a JSONL file, checked as read_jsonl says."""
    if not os.path.exists(path):
        raise SystemExit(f"data file not found: {path} (run generate_pairs.py first)")
    rows = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise SystemExit(f"{path}:{lineno}: malformed JSON ({e.msg})")
            if not isinstance(row, dict):
                raise SystemExit(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            missing = [k for k in required if k not in row]
            if missing:
                raise SystemExit(f"{path}:{lineno}: missing key(s) {', '.join(missing)}")
            rows.append((lineno, row))
    if not rows:
        raise SystemExit(f"{path} is empty")
    return rows


def read_meta(data_dir):
    path = os.path.join(data_dir, "meta.json")
    if not os.path.exists(path):
        raise SystemExit(f"{path} not found: run `python generate_pairs.py config/data_small.py` first")
    with open(path) as f:
        try:
            meta = json.load(f)
        except json.JSONDecodeError as e:
            raise SystemExit(f"{path}:{e.lineno}: malformed JSON ({e.msg}): regenerate the data with generate_pairs.py")
    missing = [k for k in ("tokenizer", "vocab_size") if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise SystemExit(f"{path}: no {', '.join(missing)}: regenerate the data with generate_pairs.py")
    return meta


# -----------------------------------------------------------------------------
# eval.py's accuracy table, also in the report card

def percent(value, ci, sign=""):
    return f"{100 * value:{sign}.1f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def length_table(checkpoint, box):
    """Greedy accuracy (%) by length, a row per task type and a column per length, for one evaluated
    checkpoint (eval.py's by_length); * marks a length longer than any operand of that type the checkpoint
    trained on (box: its digit box, the data's meta.json "box")."""
    by_length = checkpoint["by_length"]
    lengths = sorted({int(n) for cells in by_length.values() for n in cells})
    trained = {t: max(hi for _, hi in digits) for t, digits in (box or {}).items()}
    lines = [f"| {checkpoint['name']} | " + " | ".join(f"{n} digits" for n in lengths) + " |",
             "|---|" + "---:|" * len(lengths)]
    for group, cells in by_length.items():
        row = []
        for n in lengths:
            cell = cells.get(str(n))
            mark = "*" if box and n > trained.get(group, max(trained.values())) else ""
            row.append("-" if cell is None else percent(cell["acc"], cell["ci"]) + mark)
        lines.append(f"| {group} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def markdown_table(results):
    """Greedy accuracy (%) with 95% CIs: a row per task type and overall, a column per checkpoint, and
    the paired difference last minus first when there are several."""
    checkpoints = results["checkpoints"]
    names = [c["name"] for c in checkpoints]
    header = ["task", "n"] + names + ([f"delta ({names[-1]} - {names[0]})"] if "delta" in results else [])
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for group, m in checkpoints[0]["metrics"].items():
        if group == "ungraded":
            continue
        cells = [group, str(m["n"])] + [percent(c["metrics"][group]["acc"], c["metrics"][group]["ci"])
                                       for c in checkpoints]
        if "delta" in results:
            cells.append(percent(results["delta"][group]["diff"], results["delta"][group]["ci"], "+"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
