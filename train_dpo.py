"""
Direct Preference Optimization: teach the SFT model to prefer the right completion of a prompt over
a wrong one, without a reward model. For each pair the policy raises the log-probability of the
chosen completion relative to a frozen reference (the SFT model itself) more than that of the
rejected one; the reference keeps it from drifting away from everything SFT taught it.

    python train_dpo.py config/dpo_small.py
    python train_dpo.py config/dpo_small.py --loss_type=ipo
    python train_dpo.py config/dpo_small.py --pairs_file=pairs_train.jsonl    # synthetic negatives
    python train_dpo.py config/dpo_small.py --lora_rank=8 --lora_alpha=16 --out_dir=out/dpo_lora   # LoRA: the
        # reference is the SFT model under the adapters, with them off (lora.py): no second model
    torchrun --standalone --nproc_per_node=2 train_dpo.py config/dpo_small.py --batch_size=16 \
        --gradient_accumulation_steps=2     # the same 32-pair batches, half on each process

Logged with TRL's names: loss, rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies,
logps/chosen, logps/rejected; the implicit reward of a completion is beta * log(pi / pi_ref).
Preference accuracy alone says nothing about math, so every eval also measures greedy exact-match
accuracy on held-out problems.
"""
import os
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F

from batches import batch_rng
from common import (setup, wrap_model, teardown, sync_context, check_grad_accum, get_lr, optimizer_step,
                    save_checkpoint, start_model, reference_model, checkpoint_payload, check_out_dir, check_data,
                    MetricsLog, numbered_rows, read_problems, read_meta)
from generation import encode_completions, greedy_accuracy
from configurator import configure
from lora import adapters_off, describe, settings
from model import token_logprobs
from tokenizer import END, get_tokenizer

# -----------------------------------------------------------------------------
# defaults: the small laptop run, on the pairs mined from the SFT model (README: DPO); config/*.py and
# --key=value override them
out_dir = "out/dpo"
data_dir = "data/small"
init_from = "out/sft/ckpt.pt"        # the SFT checkpoint (policy and reference start from it), or "resume"
overwrite = False                    # True: a fresh run may replace the checkpoint in out_dir
pairs_file = "pairs_onpolicy_train.jsonl"   # in data_dir (generate_pairs.py --policy=...): or pairs_train.jsonl,
                                            # pairs_seed.jsonl, any path
eval_interval = 36
log_interval = 10
val_pairs_file = ""                  # "": pairs_file's _train -> _val if that exists (pairs_onpolicy_val.jsonl), else pairs_val.jsonl
n_val_pairs = 500                    # held-out pairs for the eval metrics
n_eval_problems = 140                # greedy exact match on this many held-out problems (20 per type)
max_new_tokens = 336                 # the longest in-box completion (a 3-digit x*b=c) has ~315 tokens
# DPO
beta = 1.0                           # strength of the pull towards the reference: higher stays closer (README: DPO)
loss_type = "sigmoid"                # "sigmoid" (DPO), "robust", "ipo" or "hinge"
label_smoothing = 0.0                # sigmoid: conservative DPO; robust: the assumed label-noise rate
rpo_alpha = 1.0                      # + rpo_alpha x the chosen completion's per-token NLL (RPO, Pang et al. 2024)
reference_free = False               # reference log-probs = 0: see what the reference buys
precompute_ref = False               # score every pair with the reference once, then keep no second model
# AdamW and its schedule
batch_size = 32                      # pairs per micro-step: 64 sequences in one forward pass
gradient_accumulation_steps = 1
max_iters = 72
learning_rate = 1e-5                 # 1e-4 wrecked the model (README: DPO)
min_lr = 1e-6
warmup_iters = 10
lr_decay_iters = 0                   # 0 means max_iters
weight_decay = 0.0
beta1 = 0.9
beta2 = 0.99
grad_clip = 1.0
# LoRA (lora.py): adapters on the frozen start checkpoint, which is then also the reference (adapters off)
lora_rank = 0                        # 0: every weight trains; > 0: adapters of this rank, only they train
lora_alpha = 16.0                    # the adapters' update is scaled by lora_alpha / lora_rank
lora_dropout = 0.0
lora_targets = "all"                 # "attn", "mlp" or "all" (both)
quantize_base = "none"               # with LoRA: "int8" or "int4" weights for the frozen base (QLoRA's idea)
grad_checkpoint = False              # recompute block activations in the backward pass: less memory, more time
# system
device = "auto"
dtype = "auto"
compile = False
seed = 1337
# -----------------------------------------------------------------------------

def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta,
             loss_type="sigmoid", label_smoothing=0.0, reference_free=False, chosen_lengths=None,
             rejected_lengths=None, rpo_alpha=0.0):
    """DPO and its variants, from the summed completion log-probs of each pair, all (B,).
    Returns the loss of each pair (B,) and the implicit rewards beta * log(pi/pi_ref) of the chosen
    and rejected completions (B,), detached. With delta = chosen log-ratio - rejected log-ratio:

      sigmoid  -log sigmoid(beta*delta) (Rafailov et al. 2023); label_smoothing eps > 0 treats a
               fraction eps of the labels as flipped (conservative DPO)
      robust   the same noise model, unbiased: its expected loss under eps flipped labels is DPO's
               on clean labels (Chowdhury et al. 2024)
      ipo      (delta - 1/(2 beta))^2 on log-ratios divided by completion length (Azar et al. 2023):
               a squared loss stops pushing once the margin is reached, where sigmoid never does
      hinge    relu(1 - beta*delta) (SLiC, Zhao et al. 2023)

    reference_free=True sets the reference log-probs to 0, so the policy's own log-probs are the rewards.
    rpo_alpha > 0 adds the chosen completion's mean per-token negative log-likelihood (RPO, "iterative
    reasoning preference optimisation", Pang et al. 2024): DPO only needs the chosen side to rise relative
    to the rejected one, and on math pairs it happily lowers both until the right answers are gone."""
    if reference_free:
        ref_chosen_logps = torch.zeros_like(policy_chosen_logps)
        ref_rejected_logps = torch.zeros_like(policy_rejected_logps)
    chosen_logratios = policy_chosen_logps - ref_chosen_logps       # (B,)
    rejected_logratios = policy_rejected_logps - ref_rejected_logps  # (B,)
    if loss_type == "ipo":
        if chosen_lengths is not None:
            chosen_logratios = chosen_logratios / chosen_lengths
            rejected_logratios = rejected_logratios / rejected_lengths
        losses = (chosen_logratios - rejected_logratios - 1 / (2 * beta)) ** 2
    else:
        logits = beta * (chosen_logratios - rejected_logratios)      # (B,)
        eps = label_smoothing
        if loss_type == "sigmoid":
            losses = -(1 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)
        elif loss_type == "robust":
            losses = (-(1 - eps) * F.logsigmoid(logits) + eps * F.logsigmoid(-logits)) / (1 - 2 * eps)
        elif loss_type == "hinge":
            losses = torch.relu(1 - logits)
        else:
            raise ValueError(f"unknown loss_type {loss_type!r}")
    if rpo_alpha:
        losses = losses - rpo_alpha * policy_chosen_logps / chosen_lengths
    # rewards from the summed log-ratios whatever the loss, as TRL reports them (IPO's too), so that runs
    # with different loss types compare on one scale
    chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps).detach()
    rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps).detach()
    return losses, chosen_rewards, rejected_rewards


def completion_logps(logits, idx, completion_mask):
    """Summed log-prob of each row's completion tokens (B,). Token t+1 is scored by the logits at
    position t, so the mask is shifted with it: prompt and padding count 0, <|end|> counts."""
    return (token_logprobs(logits, idx) * completion_mask[:, 1:]).sum(dim=1)


# -----------------------------------------------------------------------------
# pairs: reading, checking, encoding, scoring

def val_pairs_path(train_path, data_dir):
    """Held-out pairs of the training kind: pairs_X_train.jsonl -> pairs_X_val.jsonl beside it when that
    exists (pairs_onpolicy_val.jsonl), else data_dir/pairs_val.jsonl (e.g. for pairs_seed.jsonl)."""
    folder, name = os.path.split(train_path)
    sibling = os.path.join(folder, name.replace("_train", "_val"))
    return sibling if sibling != train_path and os.path.exists(sibling) else os.path.join(data_dir, "pairs_val.jsonl")


def pair_from_row(row, where):
    """(prompt, chosen, rejected) from a row in either format: {prompt, chosen, rejected}
    (generate_pairs.py), or the widely copied single-file {positive, negative, Q} whose two sentences
    both start with the question Q: the prompt is Q and the completions are the rest of each."""
    seed_format = "positive" in row
    keys = ("positive", "negative", "Q") if seed_format else ("prompt", "chosen", "rejected")
    missing = [k for k in keys if k not in row]
    if missing:
        raise SystemExit(f"{where}: missing key(s) {', '.join(missing)}; a pair is {{prompt, chosen, rejected}} "
                         f"or {{positive, negative, Q}}")
    if not all(isinstance(row[k], str) for k in keys):
        raise SystemExit(f"{where}: {', '.join(keys)} must be strings")
    if not seed_format:
        prompt, chosen, rejected = (row[k] for k in keys)
    else:
        positive, negative, prompt = (row[k] for k in keys)
        if not (positive.startswith(prompt) and negative.startswith(prompt)):
            raise SystemExit(f"{where}: positive and negative must both start with Q {prompt!r}, the prompt "
                             f"they share")
        chosen, rejected = positive[len(prompt):], negative[len(prompt):]
    if not prompt.strip() or not chosen.strip() or not rejected.strip():
        raise SystemExit(f"{where}: empty prompt or completion; every pair needs a prompt and two completions")
    if chosen == rejected:
        raise SystemExit(f"{where}: chosen == rejected ({chosen!r}); such a pair teaches nothing, drop it")
    if seed_format:
        # the format has no end marker: without one the policy would never learn where an answer stops
        chosen, rejected = chosen + END, rejected + END
    return prompt, chosen, rejected


def read_pairs(path, tok, block_size):
    """Every pair of a JSONL file as a (prompt, chosen, rejected) tuple, and the line numbers of the pairs
    skipped for being longer than block_size. Skipped with a count, not an error: pairs come from
    generators that do not know the model's block_size (a wrong-operation negative of a 3-digit
    equation runs to ~190 tokens, on-policy rejects to max_new_tokens), and a few of them should not
    stop a run. Never cut: a cut pair would train on a different answer."""
    pairs, skipped = [], []
    for lineno, row in numbered_rows(path):
        prompt, chosen, rejected = pair_from_row(row, f"{path}:{lineno}")
        n_tokens = len(tok.encode(prompt)) + max(len(tok.encode(chosen)), len(tok.encode(rejected)))
        if n_tokens > block_size:
            skipped.append(lineno)
        else:
            pairs.append((prompt, chosen, rejected))
    if not pairs:
        raise SystemExit(f"{path}: every pair is longer than the model's block_size {block_size}")
    return pairs, skipped


def encode_pairs(tok, pairs, block_size, device):
    """idx, completion_mask and places, each (2B, T): the B chosen rows, then the B rejected rows, so that
    one forward pass scores both sides."""
    prompts, chosen, rejected = zip(*pairs)
    return tuple(t.to(device) for t in encode_completions(tok, prompts * 2, chosen + rejected, block_size))


def pair_logps(model, idx, completion_mask, places, rt):
    """Summed completion log-probs of the chosen (B,) and rejected (B,) rows, one forward pass."""
    with rt.autocast:
        logits, _ = model(idx, places=places)  # (2B, T, vocab)
    return completion_logps(logits, idx, completion_mask).chunk(2)


# -----------------------------------------------------------------------------
# the reference


@torch.no_grad()
def reference_table(reference, tok, pairs, block_size, rt, batch_size):
    """Reference log-probs of every pair, (N, 2) = [chosen, rejected], computed once so that no
    reference model stays in memory. That is a forward pass over the whole pairs file: worth it on a
    GPU short of memory, or when the run draws every pair several times; a run that draws about as many
    pairs as the file holds (the default) saves no time with it. Under DDP each rank scores every
    world_size-th batch and the ranks add up their tables."""
    table = torch.zeros(len(pairs), 2, device=rt.device)
    for start in range(rt.rank * batch_size, len(pairs), rt.world_size * batch_size):
        end = min(start + batch_size, len(pairs))
        with adapters_off(reference):
            table[start:end] = torch.stack(pair_logps(reference, *encode_pairs(tok, pairs[start:end], block_size,
                                                                                rt.device), rt), dim=1)
    if rt.ddp:
        dist.all_reduce(table)
    return table


@torch.no_grad()
def reference_logps(reference, split, ix, idx, completion_mask, places, rt):
    """Reference log-probs (chosen (B,), rejected (B,)) of the pairs ix of a split: from the frozen
    model (a LoRA policy's base: the policy with its adapters off), from its precomputed {split: table},
    or zeros when the run is reference-free (reference None)."""
    if reference is None:
        return torch.zeros(len(ix), device=rt.device), torch.zeros(len(ix), device=rt.device)
    if isinstance(reference, dict):
        return reference[split][torch.as_tensor(ix, device=rt.device)].unbind(dim=1)
    with adapters_off(reference):
        return pair_logps(reference, idx, completion_mask, places, rt)


# -----------------------------------------------------------------------------
# one batch of pairs, and the metrics


def dpo_batch(model, reference, split, pairs, ix, tok, block_size, rt, loss_settings):
    """The DPO loss of each pair in ix (B,), with grad, and the per-pair TRL metrics, detached.
    loss_settings: dpo_loss's keyword arguments (beta, loss_type, label_smoothing, reference_free, rpo_alpha)."""
    idx, completion_mask, places = encode_pairs(tok, [pairs[i] for i in ix], block_size, rt.device)
    policy_chosen, policy_rejected = pair_logps(model, idx, completion_mask, places, rt)
    ref_chosen, ref_rejected = reference_logps(reference, split, ix, idx, completion_mask, places, rt)
    chosen_lengths, rejected_lengths = completion_mask.sum(dim=1).chunk(2)
    losses, chosen_rewards, rejected_rewards = dpo_loss(
        policy_chosen, policy_rejected, ref_chosen, ref_rejected, chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths, **loss_settings)
    metrics = {"loss": losses.detach(), "rewards/chosen": chosen_rewards, "rewards/rejected": rejected_rewards,
               "rewards/margins": chosen_rewards - rejected_rewards,
               "rewards/accuracies": (chosen_rewards > rejected_rewards).float(),
               "logps/chosen": policy_chosen.detach(), "logps/rejected": policy_rejected.detach(),
               "completion_tokens": (chosen_lengths + rejected_lengths).float()}
    return losses, metrics


def mean_metrics(batches):
    """Means over every pair of a list of dpo_batch metrics."""
    return {k: torch.cat([m[k] for m in batches]).float().mean().item() for k in batches[0]}


@torch.no_grad()
def evaluate_pairs(model, reference, pairs, tok, block_size, rt, batch_size, loss_settings):
    model.eval()
    batches = [dpo_batch(model, reference, "val", pairs, range(i, min(i + batch_size, len(pairs))), tok,
                         block_size, rt, loss_settings)[1] for i in range(0, len(pairs), batch_size)]
    model.train()
    return mean_metrics(batches)


def check_config():
    if loss_type not in ("sigmoid", "robust", "ipo", "hinge"):
        raise SystemExit(f"loss_type={loss_type!r}; allowed: sigmoid, robust, ipo, hinge")
    if beta <= 0:
        raise SystemExit(f"beta must be > 0, got {beta}")
    if not 0 <= label_smoothing < 0.5:
        raise SystemExit(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    if rpo_alpha < 0:
        raise SystemExit(f"rpo_alpha must be >= 0, got {rpo_alpha}")
    if label_smoothing and loss_type not in ("sigmoid", "robust"):
        raise SystemExit(f"label_smoothing applies to loss_type sigmoid or robust, not {loss_type!r}")


def main():
    config = configure(globals())
    check_config()
    loss_settings = {k: config[k] for k in ("beta", "loss_type", "label_smoothing", "reference_free", "rpo_alpha")}
    rt = setup(device, dtype, seed)
    accum = check_grad_accum(gradient_accumulation_steps, rt)
    check_out_dir(out_dir, init_from == "resume", overwrite)
    meta = read_meta(data_dir)
    decay_iters = lr_decay_iters or max_iters

    # the policy; dropout off, as in the reference, or the log-ratios would be noise even at step 0
    model, ckpt, resuming, ckpt_path = start_model(init_from, out_dir, rt, dropout=0.0, stage="dpo",
                                                   lora=settings(config))
    model.grad_checkpoint = grad_checkpoint
    check_data(ckpt["tokenizer"], ckpt["model_args"]["vocab_size"], meta, ckpt_path, data_dir)
    tok = get_tokenizer(meta["tokenizer"])
    block_size = model.config.block_size
    optimizer = model.configure_optimizers(weight_decay, learning_rate, (beta1, beta2), rt.device_type)
    iter_num = 0
    tokens_seen = 0  # chosen and rejected completion tokens trained on, across ranks
    if resuming:
        optimizer.load_state_dict(ckpt["optimizer"])
        iter_num, tokens_seen = ckpt["iter_num"], ckpt["tokens_seen"]
    # the reference is the SFT model the run started from, also after a resume (its path is in the checkpoint)
    reference_from = ckpt["reference_from"] if resuming else init_from
    del ckpt
    reference = None if reference_free else reference_model(model, resuming, reference_from, rt.device)

    train_path = os.path.join(data_dir, pairs_file)
    val_path = os.path.join(data_dir, val_pairs_file) if val_pairs_file else val_pairs_path(train_path, data_dir)
    train_pairs, train_skipped = read_pairs(train_path, tok, block_size)
    val_pairs, val_skipped = read_pairs(val_path, tok, block_size)
    val_pairs = val_pairs[:n_val_pairs]
    eval_problems = read_problems(os.path.join(data_dir, "sft_val.jsonl"))[:n_eval_problems]
    reference_kind = ("none (reference_free)" if reference_free else "the policy with its adapters off"
                      if reference is model else "frozen copy")
    if precompute_ref and not reference_free:
        t0 = time.time()
        reference = {split: reference_table(reference, tok, pairs, block_size, rt, batch_size)
                     for split, pairs in (("train", train_pairs), ("val", val_pairs))}
        reference_kind = f"log-probs precomputed in {time.time() - t0:.1f}s"

    model, raw_model = wrap_model(model, rt, compile)
    log = MetricsLog(out_dir, resume_iter=iter_num if resuming else None) if rt.master else None
    if rt.master:
        for path, skipped in ((train_path, train_skipped), (val_path, val_skipped)):
            if skipped:
                print(f"{path}: skipped {len(skipped)} pairs longer than block_size {block_size} "
                      f"(lines {', '.join(map(str, skipped[:5]))}{', ...' if len(skipped) > 5 else ''})")
        print(f"{len(train_pairs):,} training pairs from {train_path}, {len(val_pairs)} val pairs from {val_path}, "
              f"{describe(raw_model)}, reference {reference_from}: {reference_kind}")

    t_start, train_time = time.time(), 0.0  # train_time: seconds in training steps since the last log line
    while True:
        lr = get_lr(iter_num, learning_rate, min_lr, warmup_iters, decay_iters)
        if rt.master and (iter_num % eval_interval == 0 or iter_num == max_iters):
            val = evaluate_pairs(raw_model, reference, val_pairs, tok, block_size, rt, batch_size, loss_settings)
            acc = greedy_accuracy(raw_model, tok, eval_problems, rt, max_new_tokens)
            raw_model.train()
            print(f"step {iter_num}: val loss {val['loss']:.4f}, reward accuracy {val['rewards/accuracies']:.3f}, "
                  f"margin {val['rewards/margins']:.3f}, logps chosen {val['logps/chosen']:.2f} "
                  f"rejected {val['logps/rejected']:.2f}, greedy accuracy {acc['overall']:.3f}")
            print("  " + ", ".join(f"{t} {a:.2f}" for t, a in acc.items() if t != "overall"))
            log.write(iter=iter_num, split="eval", **val, accuracy=acc, lr=lr, elapsed_s=time.time() - t_start)
            if iter_num > 0 or max_iters == 0:
                save_checkpoint(os.path.join(out_dir, "ckpt.pt"),
                                **checkpoint_payload(raw_model, optimizer, config, iter_num, meta,
                                                     stage="dpo", reference_from=reference_from, accuracy=acc,
                                                     tokens_seen=tokens_seen))
        if iter_num >= max_iters:
            break

        t0, batches = time.time(), []
        for micro_step in range(accum):
            rng = batch_rng(seed, iter_num, rt.rank * accum + micro_step)  # resumes retrace the same batches
            ix = rng.integers(0, len(train_pairs), size=batch_size)
            with sync_context(model, micro_step, accum):
                losses, metrics = dpo_batch(model, reference, "train", train_pairs, ix, tok, block_size, rt,
                                            loss_settings)
                (losses.mean() / accum).backward()  # the gradient of the mean over the accumulated batch
            batches.append(metrics)
            tokens_seen += int(metrics["completion_tokens"].sum()) * rt.world_size
        grad_norm = optimizer_step(model, optimizer, lr, grad_clip)
        iter_num += 1
        train_time += time.time() - t0

        if rt.master and iter_num % log_interval == 0:
            dt, train_time = train_time / log_interval, 0.0
            train = mean_metrics(batches)
            print(f"iter {iter_num}: loss {train['loss']:.4f}, reward accuracy {train['rewards/accuracies']:.2f}, "
                  f"margin {train['rewards/margins']:.3f}, time {dt * 1000:.1f}ms, lr {lr:.2e}")
            log.write(iter=iter_num, split="train", **train, lr=lr, grad_norm=grad_norm, ms_per_iter=dt * 1000,
                      elapsed_s=time.time() - t_start)
    if rt.master:
        print(f"done in {time.time() - t_start:.1f}s; checkpoint {os.path.join(out_dir, 'ckpt.pt')}")
    teardown(rt)


if __name__ == "__main__":
    main()
