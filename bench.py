"""
Throughput benchmark, printed as a Markdown table of ratios measured in one run (the machines are noisy:
compare within a run, not across runs).

    python bench.py                       # the small config's shape on this machine
    python bench.py --n_layer=12 --n_embd=768 --n_head=12 --batch_size=8 --block_size=1024   # GPT-2 on a GPU

Training: tokens/s of nanomath's model in fp32 and bf16 autocast, eager and compiled, against a baseline:
the same shape written the obvious way (attention by hand with a materialised (T, T) mask, exact GELU,
per-parameter AdamW, fp32, eager). Generation: the KV-cache engine against recomputing the whole prefix
for every new token. With --rollout_ckpt=out/sft/ckpt.pt, also GRPO's rollouts from a trained model (its
prompts, its groups, temperature 1): the rows that stopped kept to the end or dropped from the batch, and
the batch sampled in one round or in rounds of prompts_per_step prompts, and rows cut a little past their
reference completion (train_grpo.py's rollout_slack).

    python bench.py --rollout_ckpt=out/sft/ckpt.pt --compile_variants=False

With --memory=True, instead: the memory of one AdamW training step of the shape, fully fine-tuned or with LoRA
(lora.py), a quantized base and gradient checkpointing (README: LoRA has the table, one fresh process a row):

    MALLOC_MMAP_THRESHOLD_=65536 python bench.py --memory=True --n_layer=12 --n_head=12 --n_embd=768 \
        --vocab_size=50304 --batch_size=8 --lora_rank=32 --lora_alpha=64 --quantize_base=int8 --grad_checkpoint=True
"""
import ctypes
import dataclasses
import math
import os
import random
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from common import load_checkpoint, model_from_checkpoint, peak_flops, read_problems, setup
from generation import generate, place_trackers
from configurator import configure
from lora import add_lora, describe, settings
from model import GPT, GPTConfig
from task_mix import rollout_limit
from tokenizer import get_tokenizer

batch_size = 64
block_size = 128
n_layer = 4
n_head = 4
n_embd = 128
pos = "rope"                # config/pretrain_small.py's positions; the baseline keeps GPT-2's learned ones
vocab_size = 260
steps = 15                  # timed training steps per variant (after 3 warm-up steps)
gen_batch_size = 64
gen_tokens = 64
compile_variants = True     # torch.compile adds a minute of compilation on a CPU
rollout_ckpt = ""           # a trained checkpoint: also time GRPO rollouts from it (data_dir/test_length.jsonl prompts)
data_dir = "data/small"
rollout_prompts = 64        # prompts of one rollout batch, each sampled group_size times
group_size = 8
rollout_tokens = 256        # max_new_tokens of a rollout
rollout_slack = 16          # train_grpo.py's: the last variant cuts each row this many tokens past its reference
prompts_per_step = 16       # train_grpo.py's: a round of dynamic sampling before it sized one round to fill the batch
memory = False              # True: the memory of one training step instead (fp32, pos and shape as above)
lora_rank = 0               # memory: 0 trains every weight; > 0 LoRA adapters of this rank (train_sft.py's keys)
lora_alpha = 16.0
lora_dropout = 0.0
lora_targets = "all"
quantize_base = "none"
grad_checkpoint = False
device = "auto"


class ObviousBlock(nn.Module):
    """A transformer block as a first implementation writes it."""

    def __init__(self, d, h, T):
        super().__init__()
        self.h = h
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.proj = (nn.Linear(d, d) for _ in range(4))
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.register_buffer("mask", torch.tril(torch.ones(T, T)))

    def forward(self, x):
        B, T, C = x.shape
        y = self.ln1(x)
        q, k, v = (f(y).view(B, T, self.h, C // self.h).transpose(1, 2) for f in (self.q, self.k, self.v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // self.h)           # (B, h, T, T)
        att = att.masked_fill(self.mask[:T, :T] == 0, float("-inf")).softmax(dim=-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(B, T, C))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class ObviousGPT(nn.Module):
    def __init__(self, V, T, L, H, d):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, d), nn.Embedding(T, d)
        self.blocks = nn.ModuleList([ObviousBlock(d, H, T) for _ in range(L)])
        self.ln_f, self.head = nn.LayerNorm(d), nn.Linear(d, V, bias=False)

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1), device=idx.device))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def time_training(model, optimizer, autocast, device):
    x = torch.randint(0, vocab_size, (batch_size, block_size), device=device)
    y = torch.randint(0, vocab_size, (batch_size, block_size), device=device)

    def step():
        with autocast:
            _, loss = model(x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps * batch_size * block_size / (time.perf_counter() - t0)


def proc_status(key):
    """A size from /proc/self/status (VmRSS: resident now; VmHWM: its peak), in bytes."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))


def step_memory(model, optimizer, device):
    """Bytes in use before one training step (the weights, and the AdamW state a first step allocated), at
    its peak, and the step's seconds. On a GPU, torch's allocator counts them. On a CPU, the process's resident set: freed heap goes
    back to the system (malloc_trim), /proc/self/clear_refs resets the peak (VmHWM) to the present size, and
    the step's peak is read after it; everything the process holds counts, torch's own ~0.3 GB included. Run
    it with MALLOC_MMAP_THRESHOLD_=65536: glibc then maps every allocation over 64 KiB apart and unmaps it when
    freed, so the resident size follows the live tensors (without it, freed memory that glibc kept for reuse
    added 0.4 GB to the peak of one of the README's variants and not to another's)."""
    x = torch.randint(0, vocab_size, (batch_size, block_size), device=device)
    y = torch.randint(0, vocab_size, (batch_size, block_size), device=device)

    def step():
        _, loss = model(x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before, t0 = torch.cuda.memory_allocated(), time.perf_counter()
        step()
        torch.cuda.synchronize()
        return before, torch.cuda.max_memory_allocated(), time.perf_counter() - t0
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError as e:
        raise SystemExit(f"--memory=True on a CPU resets the peak resident size through /proc/self/clear_refs "
                         f"(Linux): {e.strerror}")
    before, t0 = proc_status("VmRSS"), time.perf_counter()
    step()
    return before, proc_status("VmHWM"), time.perf_counter() - t0


def measure_memory(config, rt):
    """One line: the peak memory of a training step of this shape and how it trains."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=block_size, vocab_size=vocab_size, n_layer=n_layer, n_head=n_head,
                          n_embd=n_embd, pos=pos)).to(rt.device)
    lora = settings(config)
    if lora:
        add_lora(model, "", **lora)
    model.grad_checkpoint = grad_checkpoint
    optimizer = model.configure_optimizers(0.1, 1e-4, (0.9, 0.99), rt.device_type)
    before, peak, seconds = step_memory(model, optimizer, rt.device)
    print(f"{describe(model)}, grad_checkpoint={grad_checkpoint}: peak {peak / 2**20:,.0f} MiB in a training step, "
          f"{before / 2**20:,.0f} MiB before it; the step took {seconds:.1f}s ({rt.device}, float32, batch "
          f"{batch_size} x {block_size} tokens)")


def main():
    config = configure(globals())
    rt = setup(device, "float32")
    if memory:
        return measure_memory(config, rt)
    dev = rt.device
    print(f"device {dev}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"shape {n_layer}L x {n_embd}d x {n_head}h, batch {batch_size} x {block_size} tokens")
    rows = []
    torch.manual_seed(0)
    baseline = ObviousGPT(vocab_size, block_size, n_layer, n_head, n_embd).to(dev)
    opt = torch.optim.AdamW(baseline.parameters(), lr=1e-4, foreach=False)
    base_tps = time_training(baseline, opt, torch.autocast(dev.split(":")[0], enabled=False), dev)
    rows.append(("baseline: obvious GPT-2, fp32, eager", base_tps))

    config = GPTConfig(block_size=block_size, vocab_size=vocab_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                       pos=pos)
    variants = [(dt, c) for c in ((False, True) if compile_variants else (False,)) for dt in ("float32", "bfloat16")]
    best = None
    for dt, compiled in variants:
        torch.manual_seed(0)
        model = GPT(config).to(dev)
        opt = model.configure_optimizers(0.1, 1e-4, (0.9, 0.99), rt.device_type)
        run = torch.compile(model) if compiled else model
        autocast = torch.autocast(rt.device_type, dtype=torch.bfloat16, enabled=dt == "bfloat16")
        tps = time_training(run, opt, autocast, dev)
        rows.append((f"nanomath, {dt}, {'compiled' if compiled else 'eager'}", tps))
        best = max(best or (0, "", ""), (tps, rows[-1][0], dt))
    print("\n| training | tokens/s | vs baseline |\n|---|---:|---:|")
    for name, tps in rows:
        print(f"| {name} | {tps:,.0f} | {tps / base_tps:.2f}x |")
    peak = peak_flops(dataclasses.replace(rt, dtype=best[2]))
    if peak:
        model = GPT(config)
        mfu = model.flops_per_token(block_size) * best[0] / peak
        print(f"\nbest: {best[1]}, {model.num_params() / 1e6:.2f}M params, MFU {mfu:.1%} of "
              f"{'the datasheet peak' if rt.device_type == 'cuda' else f'a measured {best[2]} 1024x1024 matmul'} "
              f"({peak / 1e12:.2f} TFLOP/s)")

    torch.manual_seed(0)
    model = GPT(config).to(dev).eval()
    prompts = [[int(t) for t in torch.randint(0, vocab_size, (10,))] for _ in range(gen_batch_size)]
    speeds = {}
    for use_cache in (True, False):
        generate(model, prompts[:2], 4, use_cache=use_cache)  # warm up
        t0 = time.perf_counter()
        generate(model, prompts, gen_tokens, use_cache=use_cache)
        speeds[use_cache] = gen_batch_size * gen_tokens / (time.perf_counter() - t0)
    print(f"\n| generation, batch {gen_batch_size}, {gen_tokens} new tokens | tokens/s | ratio |\n|---|---:|---:|")
    print(f"| recompute the prefix every token | {speeds[False]:,.0f} | 1.00x |")
    print(f"| KV cache | {speeds[True]:,.0f} | {speeds[True] / speeds[False]:.1f}x |")
    if rollout_ckpt:
        time_rollouts(setup(device, "auto"))


def time_rollouts(rt):
    """One GRPO rollout batch from rollout_ckpt, timed four ways: finished rows decoded to the end, finished
    rows dropped from the batch (one round), the same rows in rounds of prompts_per_step prompts, as
    train_grpo.py's dynamic sampling drew them before it sized one round to fill the batch, and one round
    whose rows stop rollout_slack tokens past their reference completion, as train_grpo.py's do now."""
    checkpoint = load_checkpoint(rollout_ckpt, rt.device)
    tok = get_tokenizer(checkpoint["tokenizer"])
    model = model_from_checkpoint(checkpoint, rt.device).eval()
    # lengths 1 to 6, in and past the box, as GRPO practises at the edge (timing only: nothing trains on them)
    problems = random.Random(0).sample(read_problems(os.path.join(data_dir, "test_length.jsonl")), rollout_prompts)
    prompts = [tok.encode(p.prompt) for p in problems for _ in range(group_size)]
    autocast = torch.autocast(rt.device_type, dtype=torch.bfloat16, enabled=rt.dtype == "bfloat16")
    n = prompts_per_step * group_size
    limits = [rollout_limit(tok, p, rollout_slack, rollout_tokens) for p in problems for _ in range(group_size)]
    variants = [("finished rows decoded to the end (as round 1 did)", False, [prompts], None),
                (f"in rounds of {prompts_per_step} prompts, finished rows dropped", True,
                 [prompts[i:i + n] for i in range(0, len(prompts), n)], None),
                (f"in one round of {rollout_prompts} prompts, finished rows dropped", True, [prompts], None),
                (f"the same, each row cut {rollout_slack} tokens past its reference", True, [prompts], limits)]
    print(f"\n| GRPO rollouts from {rollout_ckpt}: {rollout_prompts} prompts x {group_size}, {rollout_tokens} new "
          f"tokens at most, {rt.dtype} | seconds | sampled tokens/s | ratio |\n|---|---:|---:|---:|")
    first = None
    for name, compact, rounds, row_limits in variants:
        t0, tokens = time.perf_counter(), 0
        for batch in rounds:
            with autocast:
                gen = generate(model, batch, rollout_tokens, temperature=1.0, stop_ids=(tok.end_id,),
                               generator=torch.Generator(rt.device).manual_seed(0), compact=compact,
                               trackers=place_trackers(model, tok, batch), limits=row_limits)
            tokens += int(gen.mask.sum())
        seconds = time.perf_counter() - t0
        first = first or seconds
        print(f"| {name} | {seconds:.2f} | {tokens / seconds:,.0f} | {first / seconds:.2f}x |")


if __name__ == "__main__":
    main()
