"""
LoRA (Hu et al. 2021) on the Linear layers of model.GPT's blocks, and a quantized frozen base under them:
QLoRA's idea (Dettmers et al. 2023) in plain torch, without bitsandbytes, so it runs on a CPU too.

A LoRA layer keeps its base weight W (out, in) frozen and learns a low-rank update of it:

    y = x W^T + b + (alpha / r) * dropout(x) A^T B^T            A (r, in), B (out, r)

A starts random and B at zero, so step 0 is exactly the base model. Only A and B train, r * (in + out)
weights a layer instead of in * out, and AdamW keeps its two moments for them alone. The stage scripts take

    lora_rank      r; 0 (the default) trains every weight
    lora_alpha     the update is scaled by alpha / r: alpha = 2r keeps the scale as r changes
    lora_dropout   dropout on the adapters' input only
    lora_targets   'attn' (c_attn, attn.c_proj), 'mlp' (c_fc, mlp.c_proj) or 'all'
    quantize_base  'none', 'int8' or 'int4': every Linear weight of the blocks (the whole frozen base,
                   targeted or not) stored quantized; embeddings, norms and biases stay as they are

and write an adapter checkpoint: the adapters, these settings and the path of the base checkpoint, not the
base's weights (common.checkpoint_payload). common.model_from_checkpoint loads one merged into a plain GPT
(eval.py's and sample.py's default) or unmerged, as it trained (`--merge_lora=False`).

The quantization is weight-only and symmetric (absmax): the matmuls run in the training dtype on weights
dequantized on the fly, one layer at a time, in the forward and again in the backward, so autograd keeps
only the quantized weights and no float copy of the base. With s the scale of a weight's row or group:
    int8   s = max |w| of the output row / 127, q = round(w / s) in [-127, 127]
    int4   s = max |w| of a group of 32 inputs / 7, q = round(w / s) in [-7, 7], two q a byte
and every dequantized weight q * s is within s / 2 of w (rounding to the nearest level; float32 arithmetic
adds at most 1e-5 of that): int8 within 1/254 of its row's largest weight, int4 within 1/14 of its group's (tested). QLoRA's
4-bit NF4 spaces its levels by a normal distribution instead; uniform levels keep the bound this simple.
"""
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F

TARGETS = {"attn": ("attn.c_attn", "attn.c_proj"), "mlp": ("mlp.c_fc", "mlp.c_proj")}
TARGETS["all"] = TARGETS["attn"] + TARGETS["mlp"]
QUANTIZE = ("none", "int8", "int4")
INT4_GROUP = 32


def settings(config):
    """A stage's LoRA keys checked: add_lora's keyword arguments (base excepted), or None when lora_rank is 0."""
    rank, alpha, dropout = config["lora_rank"], config["lora_alpha"], config["lora_dropout"]
    targets, quantize_base = config["lora_targets"], config["quantize_base"]
    if rank < 0:
        raise SystemExit(f"lora_rank must be >= 0 (0: no adapters, every weight trains), got {rank}")
    if targets not in TARGETS:
        raise SystemExit(f"lora_targets={targets!r}; allowed: {', '.join(TARGETS)}")
    if quantize_base not in QUANTIZE:
        raise SystemExit(f"quantize_base={quantize_base!r}; allowed: {', '.join(QUANTIZE)}")
    if quantize_base != "none" and rank == 0:
        raise SystemExit(f"quantize_base={quantize_base!r} quantizes the frozen base under LoRA adapters, and "
                         "full fine-tuning trains the base: set lora_rank > 0 (e.g. 8)")
    if alpha <= 0:
        raise SystemExit(f"lora_alpha must be > 0 (the update is scaled by alpha / rank), got {alpha}")
    if not 0 <= dropout < 1:
        raise SystemExit(f"lora_dropout must be in [0, 1), got {dropout}")
    if rank == 0:
        return None
    return dict(rank=rank, alpha=alpha, dropout=dropout, targets=targets, quantize_base=quantize_base)


# -----------------------------------------------------------------------------
# weight-only quantization of the frozen base

def quantize_int8(w):
    """w (out, in) -> q (out, in) int8 and scales s (out,): one scale per output row."""
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127                              # (out,)
    return torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


def quantize_int4(w, group_size=INT4_GROUP):
    """w (out, in) -> packed (out, in/2) uint8, two 4-bit levels a byte (q + 8 in 1..15, the even input in the
    low half), and scales s (out, in/group_size): one scale per group of group_size inputs of a row."""
    n_out, n_in = w.shape
    groups = w.reshape(n_out, n_in // group_size, group_size)                       # (out, in/g, g)
    scale = groups.abs().amax(dim=2).clamp(min=1e-12) / 7                           # (out, in/g)
    q = (torch.round(groups / scale[..., None]).clamp(-7, 7) + 8).to(torch.uint8).reshape(n_out, n_in)
    return q[:, 0::2] | (q[:, 1::2] << 4), scale


def dequantize(q, scale):
    """The float32 weight (out, in) of quantize_int8's or quantize_int4's output (told apart by q's dtype)."""
    if q.dtype == torch.int8:
        return q.float() * scale[:, None]
    levels = torch.stack([q & 15, q >> 4], dim=-1).reshape(q.size(0), -1).float() - 8   # (out, in)
    return (levels.reshape(*scale.shape, -1) * scale[..., None]).reshape(levels.shape)


class DequantLinear(torch.autograd.Function):
    """x W^T + b with W dequantized from (q, scale) in the forward, and again in the backward for the input's
    gradient: autograd saves q (1 or 1/2 byte a weight), not the float W a plain F.linear would keep. W and b
    are frozen: no gradient for them."""

    @staticmethod
    def forward(ctx, x, q, scale, bias):
        # a Function's forward runs outside autocast: compute in autocast's dtype by hand, as nn.Linear would
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        ctx.save_for_backward(q, scale)
        ctx.x_dtype = x.dtype
        return F.linear(x.to(dtype), dequantize(q, scale).to(dtype), None if bias is None else bias.to(dtype))

    @staticmethod
    def backward(ctx, grad):
        q, scale = ctx.saved_tensors
        return (grad @ dequantize(q, scale).to(grad.dtype)).to(ctx.x_dtype), None, None, None


class QuantLinear(nn.Module):
    """A frozen nn.Linear with its weight stored in int8 or int4 (the module docstring has the error bound)."""

    def __init__(self, linear, bits, name=""):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        if bits == 4 and self.in_features % INT4_GROUP:
            raise SystemExit(f"quantize_base='int4' quantizes groups of {INT4_GROUP} inputs, but {name} has "
                             f"{self.in_features} inputs: use quantize_base='int8'")
        w = linear.weight.detach()
        q, scale = quantize_int8(w) if bits == 8 else quantize_int4(w)
        self.register_buffer("q", q)
        self.register_buffer("scale", scale)
        self.bias = linear.bias

    def forward(self, x):
        return DequantLinear.apply(x, self.q, self.scale, self.bias)

    def dequantized(self):
        """The float nn.Linear this layer computes."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device=self.q.device)
        linear.weight = nn.Parameter(dequantize(self.q, self.scale), requires_grad=False)
        linear.bias = self.bias
        return linear


# -----------------------------------------------------------------------------
# the adapters

class LoRALinear(nn.Module):
    def __init__(self, base, rank, alpha, dropout=0.0):
        super().__init__()
        self.base = base                                     # nn.Linear or QuantLinear, frozen
        device = base.scale.device if isinstance(base, QuantLinear) else base.weight.device
        self.lora_A = nn.Linear(base.in_features, rank, bias=False, device=device)    # (r, in)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False, device=device)   # (out, r)
        nn.init.zeros_(self.lora_B.weight)                   # B = 0: the model starts as the base
        self.scaling = alpha / rank
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()   # p=0 would still copy x and keep a mask
        self.enabled = True                                  # adapters_off turns it off
        self.merged = False                                  # merge: the update lives in the base weight

    def forward(self, x):
        y = self.base(x)                                     # (B, T, out)
        if self.enabled and not self.merged:
            y = y + self.lora_B(self.lora_A(self.dropout(x))) * self.scaling
        return y

    def delta(self):
        """The update (alpha / r) B A, (out, in)."""
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling


def lora_layers(model):
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def replace(model, name, module):
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, module)


def add_lora(model, base, rank, alpha, dropout=0.0, targets="all", quantize_base="none"):
    """Wrap the targeted Linears of every block of model (a GPT) in LoRALinear, quantize the base's block
    Linears if asked, and freeze everything but the adapters. base is the path of the checkpoint the frozen
    weights come from, which the adapter checkpoint names. Returns model, changed in place."""
    model.requires_grad_(False)
    for name, module in list(model.transformer.h.named_modules()):
        if not isinstance(module, nn.Linear):
            continue
        layer = module if quantize_base == "none" else QuantLinear(module, 8 if quantize_base == "int8" else 4, name)
        if name.endswith(TARGETS[targets]):
            layer = LoRALinear(layer, rank, alpha, dropout)
        replace(model.transformer.h, name, layer)
    model.lora_settings = dict(base=base, rank=rank, alpha=alpha, dropout=dropout, targets=targets,
                               quantize_base=quantize_base)
    return model


def is_adapted(model):
    return getattr(model, "lora_settings", None) is not None


@torch.no_grad()
def merge(model):
    """Fold every adapter's update into its base weight: the model computes the same and runs at the base's
    speed. A quantized base becomes the float weight it stood for, plus the update."""
    for m in lora_layers(model):
        if not m.merged:
            if isinstance(m.base, QuantLinear):
                m.base = m.base.dequantized()
            m.base.weight += m.delta().to(m.base.weight.dtype)
            m.merged = True


@torch.no_grad()
def unmerge(model):
    """Take the updates back out of the base weights (a base that was quantized stays dequantized)."""
    for m in lora_layers(model):
        if m.merged:
            m.base.weight -= m.delta().to(m.base.weight.dtype)
            m.merged = False


def unload(model):
    """Merge, then replace every LoRALinear by its base and every QuantLinear by its float Linear: a plain
    GPT, whose state_dict loads into GPT like any checkpoint's. Returns model, changed in place."""
    merge(model)
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            replace(model, name, module.base)
        elif isinstance(module, QuantLinear):
            replace(model, name, module.dequantized())
    model.lora_settings = None
    return model


@contextmanager
def adapters_off(model):
    """The base model, adapters skipped, for the duration: the reference of DPO and GRPO is the start
    checkpoint, and under a LoRA policy that is its own base, so no second model is held in memory.
    A model without adapters is left as it is."""
    layers = lora_layers(model)
    if any(m.merged for m in layers):
        raise SystemExit("adapters_off: the adapters are merged into the base weights; unmerge(model) first")
    for m in layers:
        m.enabled = False
    try:
        yield model
    finally:
        for m in layers:
            m.enabled = True


def adapter_state(model):
    """The adapters' weights, {name: tensor}: all that an adapter checkpoint stores of the model."""
    return {k: v for k, v in model.state_dict().items() if ".lora_" in k}


def load_adapters(model, state, path=""):
    """Load adapter_state's output into a model that add_lora gave the same settings."""
    expected = set(adapter_state(model))
    if set(state) != expected:
        odd = sorted(set(state) ^ expected)
        raise SystemExit(f"{path}: its adapters do not fit the model its settings describe ({len(odd)} tensors "
                         f"differ, e.g. {odd[0]}): the base checkpoint changed shape since they were trained")
    model.load_state_dict(state, strict=False)
    return model


def describe(model):
    """'0.83M parameters', and for an adapted model how many train and how its base is stored."""
    n = model.num_params()                              # a quantized weight is a buffer: count it too
    n += sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, QuantLinear))
    if not is_adapted(model):
        return f"{n / 1e6:.2f}M parameters"
    s = model.lora_settings
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    base = "" if s["quantize_base"] == "none" else f", {s['quantize_base']} base"
    return (f"{n / 1e6:.2f}M parameters, LoRA r={s['rank']} alpha={s['alpha']:g} on {s['targets']}{base}: "
            f"{trained:,} trainable ({trained / n:.1%})")
