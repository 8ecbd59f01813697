"""
Pretraining: next-token prediction on the stream of worked problems that generate_pairs.py wrote
to data/<name>/train.bin. Reads like nanoGPT's train.py.

    python train_pretrain.py config/pretrain_small.py
    torchrun --standalone --nproc_per_node=2 train_pretrain.py config/pretrain_small.py --batch_size=14 \
        --gradient_accumulation_steps=2     # 28 sequences an iteration, half on each process
"""
import os
import time

import numpy as np
import torch

from batches import (batch_rng, document_mask, document_starts, get_batch, operand_tokens, read_tokens,
                     unused_token_ids)
from common import (setup, wrap_model, teardown, sync_context, check_grad_accum, get_lr, optimizer_step,
                    peak_flops, save_checkpoint, start_model, checkpoint_payload, check_out_dir, check_data,
                    MetricsLog, read_meta, zero_unused_tokens)
from configurator import configure
from model import GPT, GPTConfig
from tokenizer import get_tokenizer

# -----------------------------------------------------------------------------
# defaults: the small laptop run, a 0.83M-parameter model (README: Pretraining); config/*.py and --key=value
# override them
out_dir = "out/pretrain"
data_dir = "data/small"
init_from = "scratch"       # "scratch", "resume" (from out_dir/ckpt.pt) or "gpt2"
overwrite = False           # True: a fresh run may replace the checkpoint in out_dir
eval_interval = 250
eval_iters = 20
log_interval = 25
# data
batch_size = 27
block_size = 640            # the model's context: the longest test problem (a 6-digit x*b=c) has ~610 tokens
window = 384                # the tokens of a training row: several worked problems, each whole (the longest ~330);
                            # shorter than the context because a row's attention costs its square (2x slower at 640)
gradient_accumulation_steps = 1
# model
n_layer = 4
n_head = 4
n_kv_head = 0
n_embd = 128
dropout = 0.0
zero_unused = False         # True: tokens train.bin never holds keep a zero embedding (README: Word problems)
bias = True
pos = "coupled"             # digit places (places.py): what generalises past the trained lengths (README); or "rope", "learned"
norm = "layernorm"
mlp = "gelu"
qk_norm = False
tie_embeddings = True
# AdamW and its schedule
learning_rate = 3e-3
max_iters = 550
weight_decay = 0.1
beta1 = 0.9
beta2 = 0.99
grad_clip = 1.0
warmup_iters = 100
lr_decay_iters = 0          # 0 means max_iters
min_lr = 3e-4
# system
device = "auto"
dtype = "auto"
compile = False
seed = 1337
prompt_loss = False         # False: a prompt's digits, its random operands, are not scored; its operator and the
                            # worked solution are (arithmetic data; word stories are scored whole: README, Pretraining)
# -----------------------------------------------------------------------------


@torch.no_grad()
def estimate_loss(model, splits, rt, eval_iters, batch_size, window, seed, eot_id, operands):
    """Mean loss over eval_iters batches of each split, scored as training scores them; the same batches at
    every evaluation."""
    model.eval()
    out = {}
    for name, stream in splits.items():
        losses = []
        for k in range(eval_iters):
            x, y, places = get_batch(*stream, batch_size, window, np.random.default_rng([seed, 99, k]), rt.device,
                                     operands)
            with rt.autocast:
                _, loss = model(x, y, places=places, attn_mask=document_mask(x, eot_id))
            losses.append(loss.item())
        out[name] = float(np.mean(losses))
    model.train()
    return out


def main():
    config = configure(globals())
    rt = setup(device, dtype, seed)
    accum = check_grad_accum(gradient_accumulation_steps, rt)
    resuming = init_from == "resume"
    check_out_dir(out_dir, resuming, overwrite)
    meta = read_meta(data_dir)
    decay_iters = lr_decay_iters or max_iters

    iter_num, best_val_loss, ckpt_path = 0, 1e9, os.path.join(out_dir, "ckpt.pt")
    described = GPTConfig(block_size=block_size, vocab_size=meta["vocab_size"], n_layer=n_layer, n_head=n_head,
                          n_kv_head=n_kv_head, n_embd=n_embd, dropout=dropout, bias=bias, pos=pos, norm=norm,
                          mlp=mlp, qk_norm=qk_norm, tie_embeddings=tie_embeddings)   # the model the keys describe
    if init_from == "scratch":
        model = GPT(described).to(rt.device)
    elif resuming:
        model, ckpt, _, _ = start_model(init_from, out_dir, rt, dropout, stage="pretrain")
        check_data(ckpt["tokenizer"], ckpt["model_args"]["vocab_size"], meta, ckpt_path, data_dir)
        ignored = {k: v for k, v in ckpt["model_args"].items()
                   if k not in ("vocab_size", "dropout") and getattr(described, k, v) != v}
        if ignored and rt.master:
            print(f"warning: resuming {ckpt_path} keeps its model, so these keys are ignored: "
                  + ", ".join(f"{k}={getattr(described, k)!r} (the checkpoint's: {v!r})" for k, v in ignored.items()))
        iter_num, best_val_loss = ckpt["iter_num"], ckpt["best_val_loss"]
    elif init_from == "gpt2":
        model = GPT.from_pretrained("gpt2", dropout=dropout, vocab_size=meta["vocab_size"]).to(rt.device)
        check_data("gpt2", model.config.vocab_size, meta, "gpt2 (Hugging Face)", data_dir)
    else:
        raise SystemExit(f"init_from={init_from!r}; allowed: scratch, resume, gpt2")
    if window > model.config.block_size:
        raise SystemExit(f"window={window} is longer than the model's block_size {model.config.block_size}")
    longest = max(meta.get("max_document_tokens", {}).get("train", {}).values(), default=0)  # <|endoftext|> included
    if longest > window + 1:
        raise SystemExit(f"window={window} cuts the longest training documents ({longest} tokens, {data_dir}/"
                         f"meta.json): no window would hold a whole worked problem; use window >= {longest - 1}")
    tok = get_tokenizer(meta["tokenizer"])
    eot_id = tok.eot_id
    splits = {}
    for split in ("train", "val"):
        data = read_tokens(data_dir, split)
        splits[split] = (data, read_tokens(data_dir, f"{split}_places"), document_starts(data, eot_id, window))
    operands = None if prompt_loss else operand_tokens(tok, splits["train"][0], meta.get("family", "arithmetic"))
    if not prompt_loss and operands is None:
        raise SystemExit(f"prompt_loss=False leaves out the operands of a prompt that ends at a '?'; the "
                         f"documents of {data_dir} are not all such (word stories, or a tokenizer that merges '?'): "
                         f"use --prompt_loss=True")
    tokens_per_iter = accum * rt.world_size * batch_size * window
    if zero_unused:
        zero_unused_tokens(model, unused_token_ids(data_dir, model.config.vocab_size))
    optimizer = model.configure_optimizers(weight_decay, learning_rate, (beta1, beta2), rt.device_type)
    if resuming:
        optimizer.load_state_dict(ckpt["optimizer"])
        del ckpt
    model, raw_model = wrap_model(model, rt, compile)
    log = MetricsLog(out_dir, resume_iter=iter_num if resuming else None) if rt.master else None
    peak = peak_flops(rt) if rt.master else None
    if rt.master:
        print(f"{raw_model.num_params() / 1e6:.2f}M parameters, {tokens_per_iter:,} tokens/iter, "
              f"device {rt.device} ({rt.dtype}), {rt.world_size} process(es)")

    t0, t_start = time.time(), time.time()
    while True:
        lr = get_lr(iter_num, learning_rate, min_lr, warmup_iters, decay_iters)
        if iter_num % eval_interval == 0 or iter_num == max_iters:
            if rt.master:
                # the raw model: through the DDP wrapper a forward broadcasts buffers (RoPE's) from rank 0 to
                # ranks that may have finished, and the final evaluation hangs or crashes
                losses = estimate_loss(raw_model, splits, rt, eval_iters, batch_size, window, seed, eot_id,
                                       operands)
                print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
                log.write(iter=iter_num, split="eval", train_loss=losses["train"], val_loss=losses["val"], lr=lr,
                          elapsed_s=time.time() - t_start)
                best_val_loss = min(best_val_loss, losses["val"])
                if iter_num > 0 or max_iters == 0:  # max_iters=0 writes the untrained model
                    save_checkpoint(ckpt_path, **checkpoint_payload(raw_model, optimizer, config, iter_num,
                                                                    meta, stage="pretrain",
                                                                    best_val_loss=best_val_loss,
                                                                    tokens_seen=iter_num * tokens_per_iter))
        if iter_num >= max_iters:
            break

        for micro_step in range(accum):
            x, y, places = get_batch(*splits["train"], batch_size, window,
                                     batch_rng(seed, iter_num, rt.rank * accum + micro_step), rt.device,
                                     operands)
            with sync_context(model, micro_step, accum), rt.autocast:
                _, loss = model(x, y, places=places, attn_mask=document_mask(x, eot_id))
                loss = loss / accum  # the gradient of the mean over the whole accumulated batch
            loss.backward()
        grad_norm = optimizer_step(model, optimizer, lr, grad_clip)
        iter_num += 1

        if iter_num % log_interval == 0 and rt.master:
            dt = (time.time() - t0) / log_interval
            t0 = time.time()
            lossf = loss.item() * accum
            mfu = raw_model.estimate_mfu(tokens_per_iter, window, dt, peak) if peak else float("nan")
            print(f"iter {iter_num}: loss {lossf:.4f}, time {dt * 1000:.1f}ms, "
                  f"tok/s {tokens_per_iter / dt:,.0f}, mfu {mfu * 100:.1f}%, lr {lr:.2e}")
            log.write(iter=iter_num, split="train", loss=lossf, lr=lr, grad_norm=grad_norm, ms_per_iter=dt * 1000,
                      tokens_per_s=tokens_per_iter / dt, mfu=mfu, elapsed_s=time.time() - t_start)
    if rt.master:
        print(f"done in {time.time() - t_start:.1f}s; checkpoint {ckpt_path}")
    teardown(rt)


if __name__ == "__main__":
    main()
