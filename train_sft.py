"""
Supervised fine-tuning: teach the pretrained model to answer a prompt. The same worked problems
as pretraining, but now as (prompt, completion) pairs with the loss on completion tokens only, so the
model spends nothing on predicting the random operands of the prompt. The loss is pretraining's,
model(x, y), with the targets of the prompt and the padding set to -1. Half of every batch comes from
sft_extra.jsonl, more problems of the types whose steps multiply (README: The data).

    python train_sft.py config/sft_small.py
    python train_sft.py config/sft_small.py --lora_rank=8 --lora_alpha=16 --learning_rate=1e-3 \
        --out_dir=out/sft_lora    # LoRA (lora.py): adapters on the frozen pretrained model, and only they train
    torchrun --standalone --nproc_per_node=2 train_sft.py config/sft_small.py --batch_size=32 \
        --gradient_accumulation_steps=2     # the same 64-example batches, half on each process
"""
import os
import time
from collections import defaultdict

import numpy as np
import torch

from batches import (batch_rng, document_mask, document_starts, get_batch, operand_tokens, read_tokens,
                     unused_token_ids, sft_batch)
from common import (setup, wrap_model, teardown, sync_context, check_grad_accum, get_lr, optimizer_step,
                    save_checkpoint, start_model, checkpoint_payload, check_out_dir, check_data, MetricsLog,
                    read_jsonl, read_problems, read_meta, zero_unused_tokens)
from generation import greedy_accuracy
from configurator import configure
from lora import describe, settings
from model import GPT
from tokenizer import get_tokenizer

# -----------------------------------------------------------------------------
# defaults: the small laptop run (README: SFT); config/*.py and --key=value override them
out_dir = "out/sft"
data_dir = "data/small"
init_from = "out/pretrain/ckpt.pt"   # a checkpoint path, "resume" (out_dir/ckpt.pt) or "gpt2"
train_files = "sft_train.jsonl,sft_extra.jsonl"   # in data_dir, comma-separated; every file gets an equal
                                     # share of each batch: the multiplying types' extra problems (README: The data)
                                     # (self-improvement: "sft_train.jsonl,sft_self_4.jsonl", README)
overwrite = False                    # True: a fresh run may replace the checkpoint in out_dir
eval_interval = 200
log_interval = 25
n_eval_problems = 140                # greedy exact match on this many held-out problems (20 per type)
max_new_tokens = 336                 # the longest in-box completion (a 3-digit x*b=c) has ~315 tokens
forgetting_threshold = 0.3           # warn when pretraining val loss rises this much above its start
batch_size = 64
gradient_accumulation_steps = 1
max_iters = 800                      # 400 left the multiplying types 3-9 points lower on two seeds (README: SFT)
learning_rate = 3e-4                 # where pretraining's schedule ended: a higher rate forgets (README: SFT)
min_lr = 3e-5
warmup_iters = 20
lr_decay_iters = 0                   # 0 means max_iters
weight_decay = 0.1
beta1 = 0.9
beta2 = 0.99
grad_clip = 1.0
dropout = 0.0
zero_unused = False                  # True: tokens train.bin never holds keep a zero embedding (README: Word problems)
# LoRA (lora.py): adapters on the frozen start checkpoint; out_dir/ckpt.pt then holds only them and its path
lora_rank = 0                        # 0: every weight trains; > 0: adapters of this rank, only they train
lora_alpha = 16.0                    # the adapters' update is scaled by lora_alpha / lora_rank
lora_dropout = 0.0
lora_targets = "all"                 # "attn", "mlp" or "all" (both)
quantize_base = "none"               # with LoRA: "int8" or "int4" weights for the frozen base (QLoRA's idea)
grad_checkpoint = False              # recompute block activations in the backward pass: less memory, more time
device = "auto"
dtype = "auto"
compile = False
seed = 1337
# -----------------------------------------------------------------------------


@torch.no_grad()
def val_loss_by_type(model, examples, tok, block_size, rt):
    """Completion-token loss on the validation examples, per task type."""
    model.eval()
    by_type = defaultdict(list)
    for e in examples:
        by_type[e["type"]].append(e)
    out = {}
    for task_type, rows in sorted(by_type.items()):
        x, y, where = sft_batch(rows, range(len(rows)), tok, block_size, rt.device)
        with rt.autocast:
            out[task_type] = model(x, y, **where)[1].item()
    model.train()
    return out


@torch.no_grad()
def pretrain_val_loss(model, val_stream, window, rt, seed, eot_id, operands, n_batches=10):
    """Loss on the pretraining stream, in windows of `window` tokens: tracked so a fine-tuning run that forgets
    it gets noticed. With operands (batches.operand_tokens), a prompt's digits are not scored, as pretraining
    scores the stream by default: random operands are nothing to forget."""
    model.eval()
    losses = []
    for k in range(n_batches):
        x, y, places = get_batch(*val_stream, 32, window, np.random.default_rng([seed, 7, k]), rt.device,
                                 operands)
        with rt.autocast:
            losses.append(model(x, y, places=places, attn_mask=document_mask(x, eot_id))[1].item())
    model.train()
    return float(np.mean(losses))


def main():
    config = configure(globals())
    if init_from == "scratch":
        # a model's shape lives in one place, train_pretrain.py's keys, which can write an untrained checkpoint
        raise SystemExit("init_from='scratch': SFT starts from a checkpoint; for SFT without pretraining, write an "
                         "untrained one with `python train_pretrain.py --max_iters=0 --out_dir=out/untrained` and "
                         "pass --init_from=out/untrained/ckpt.pt")
    lora = settings(config)
    if lora and init_from == "gpt2":
        raise SystemExit("init_from='gpt2' with LoRA: an adapter checkpoint names the checkpoint of its base, so write "
                         "GPT-2's weights to one first (python train_pretrain.py --init_from=gpt2 --max_iters=0 "
                         "--out_dir=out/gpt2) and pass --init_from=out/gpt2/ckpt.pt")
    rt = setup(device, dtype, seed)
    accum = check_grad_accum(gradient_accumulation_steps, rt)
    check_out_dir(out_dir, init_from == "resume", overwrite)
    meta = read_meta(data_dir)
    tok = get_tokenizer(meta["tokenizer"])
    files = [read_jsonl(os.path.join(data_dir, f), ("prompt", "completion")) for f in train_files.split(",") if f]
    if not files:
        raise SystemExit("train_files is empty: name at least one file of data_dir, e.g. sft_train.jsonl")
    train = [row for rows in files for row in rows]
    offsets = np.cumsum([0] + [len(rows) for rows in files])   # file k's rows are train[offsets[k]:offsets[k+1]]
    val = read_jsonl(os.path.join(data_dir, "sft_val.jsonl"), ("prompt", "completion", "Q", "A", "type"))
    eval_problems = read_problems(os.path.join(data_dir, "sft_val.jsonl"))[:n_eval_problems]
    val_data = read_tokens(data_dir, "val")

    iter_num, resuming = 0, False
    if init_from == "gpt2":
        model = GPT.from_pretrained("gpt2", dropout=dropout, vocab_size=meta["vocab_size"]).to(rt.device)
        check_data("gpt2", model.config.vocab_size, meta, "gpt2 (Hugging Face)", data_dir)
    else:
        model, ckpt, resuming, ckpt_path = start_model(init_from, out_dir, rt, dropout, stage="sft", lora=lora)
        check_data(ckpt["tokenizer"], ckpt["model_args"]["vocab_size"], meta, ckpt_path, data_dir)
    model.grad_checkpoint = grad_checkpoint
    block = model.config.block_size
    # windows that hold the longest training document, not the whole context: a window's attention costs its square
    window = min(block, max(meta.get("max_document_tokens", {}).get("train", {}).values(), default=block))
    val_stream = (val_data, read_tokens(data_dir, "val_places"), document_starts(val_data, tok.eot_id, window))
    operands = operand_tokens(tok, val_data, meta.get("family", "arithmetic"))
    if zero_unused:
        zero_unused_tokens(model, unused_token_ids(data_dir, model.config.vocab_size))
    optimizer = model.configure_optimizers(weight_decay, learning_rate, (beta1, beta2), rt.device_type)
    if resuming:
        optimizer.load_state_dict(ckpt["optimizer"])
        iter_num = ckpt["iter_num"]
    model, raw_model = wrap_model(model, rt, compile)
    log = MetricsLog(out_dir, resume_iter=iter_num if resuming else None) if rt.master else None
    decay_iters = lr_decay_iters or max_iters
    start_pretrain_loss = ckpt.get("start_pretrain_loss") if resuming else None
    tokens_seen = ckpt["tokens_seen"] if resuming else 0  # completion tokens trained on, across ranks
    if start_pretrain_loss is None:
        start_pretrain_loss = pretrain_val_loss(raw_model, val_stream, window, rt, seed, tok.eot_id, operands)
    if rt.master:
        print(f"{len(train):,} training examples ({train_files}), {describe(raw_model)}, "
              f"pretraining val loss at start {start_pretrain_loss:.4f}")

    t0, t_start = time.time(), time.time()
    while True:
        lr = get_lr(iter_num, learning_rate, min_lr, warmup_iters, decay_iters)
        if rt.master and (iter_num % eval_interval == 0 or iter_num == max_iters):
            losses = val_loss_by_type(raw_model, val, tok, block, rt)
            acc = greedy_accuracy(raw_model, tok, eval_problems, rt, max_new_tokens)
            forget = pretrain_val_loss(raw_model, val_stream, window, rt, seed, tok.eot_id, operands)
            print(f"step {iter_num}: val loss {np.mean(list(losses.values())):.4f}, "
                  f"greedy accuracy {acc['overall']:.3f}, pretraining val loss {forget:.4f}")
            print("  " + ", ".join(f"{t} {a:.2f}" for t, a in acc.items() if t != "overall"))
            forgetting = forget > start_pretrain_loss + forgetting_threshold
            if forgetting:
                print(f"warning: pretraining val loss rose from {start_pretrain_loss:.3f} to {forget:.3f}: "
                      f"the model is forgetting; lower learning_rate or max_iters")
            log.write(iter=iter_num, split="eval", val_loss=losses, accuracy=acc, pretrain_val_loss=forget,
                      forgetting=forgetting, lr=lr, elapsed_s=time.time() - t_start)
            if iter_num > 0 or max_iters == 0:
                save_checkpoint(os.path.join(out_dir, "ckpt.pt"),
                                **checkpoint_payload(raw_model, optimizer, config, iter_num, meta,
                                                     stage="sft", start_pretrain_loss=start_pretrain_loss,
                                                     accuracy=acc, tokens_seen=tokens_seen))
        if iter_num >= max_iters:
            break

        for micro_step in range(accum):
            rng = batch_rng(seed, iter_num, rt.rank * accum + micro_step)
            k = rng.integers(0, len(files), size=batch_size)            # each file an equal share of the batch
            ix = offsets[k] + (rng.random(batch_size) * (offsets[k + 1] - offsets[k])).astype(int)
            x, y, where = sft_batch(train, ix, tok, block, rt.device)
            tokens_seen += int((y != -1).sum()) * rt.world_size
            with sync_context(model, micro_step, accum), rt.autocast:
                # pretraining's loss; the -1 targets of prompt and padding are skipped
                _, loss = model(x, y, **where)
                loss = loss / accum
            loss.backward()
        grad_norm = optimizer_step(model, optimizer, lr, grad_clip)
        iter_num += 1

        if rt.master and iter_num % log_interval == 0:
            dt = (time.time() - t0) / log_interval
            t0 = time.time()
            print(f"iter {iter_num}: loss {loss.item() * accum:.4f}, time {dt * 1000:.1f}ms, lr {lr:.2e}")
            log.write(iter=iter_num, split="train", loss=loss.item() * accum, lr=lr, grad_norm=grad_norm,
                      ms_per_iter=dt * 1000, elapsed_s=time.time() - t_start)
    if rt.master:
        print(f"done in {time.time() - t_start:.1f}s; checkpoint {os.path.join(out_dir, 'ckpt.pt')}")
    teardown(rt)


if __name__ == "__main__":
    main()
