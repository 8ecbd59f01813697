"""
GRPO: reinforcement learning from a verifiable reward. The SFT (or DPO) model answers problems drawn
fresh from the task generator (or, for word problems such as GSM8K, from the training file), tasks.is_correct
scores each answer, and the policy moves towards the completions that beat the other completions of the same
prompt. Reads like nanochat's chat_rl.py.

    python train_grpo.py config/grpo_small.py
    python train_grpo.py config/grpo_small.py --init_from=out/dpo/ckpt.pt --beta=0.04
    python train_grpo.py config/grpo_small.py --init_from=out/dpo/ckpt.pt --lora_rank=8 --lora_alpha=16 \
        --average_weight=1 --out_dir=out/grpo_lora   # LoRA (lora.py); with beta > 0 the reference is the base
    torchrun --standalone --nproc_per_node=2 train_grpo.py config/grpo_small.py --prompts_per_step=8   # 16 a step
    python train_grpo.py config/grpo_gsm8k_gpt2.py    # GSM8K's training questions, rewarded by their '#### N'

One step: draw prompts_per_step problems (never a prompt of sft_val or a test split), sample group_size
completions of each with the KV-cache engine at `temperature`, reward them, turn the rewards into
advantages within each group, then take num_iterations clipped policy-gradient steps on the batch.

The knobs
  practice           where the problems come from when task_weights is None (task_mix.py):
                     "edge": the edge of competence, 1..edge_lengths digits past the data's box. Each type and
                     length is measured by sampling group_size completions of edge_per_length fresh problems,
                     and weighs the share of its groups whose rewards would differ (GRPO's only signal): none
                     for what the model always or never solves, most where it is right half the time. Measured
                     again every edge_interval steps, so the practice moves outward as the model learns.
                     box_lengths (2) of the box's own longest lengths are measured the same way: the cells
                     that DPO or the edge's practice left weak get practised too, the solved ones next to nothing.
                     "box": answer sft_val greedily with the start checkpoint; each type weighs its error rate,
                     split over its digit-count cells by where its errors are (at least auto_weight_floor)
                     "file": the problems of data_dir/sft_train.jsonl, uniformly; the only choice for word problems
                     (generate_pairs.py's family 'words' or 'gsm8k'), which have no digits to measure a box by
  task_weights       {type: weight} of the problem mix inside the box, instead of a measured one
  scale_rewards      "group": (r - group mean) / group std (GRPO); "batch": divide by the batch's std;
                     "none": r - group mean (Dr. GRPO: the std division favours too-easy and too-hard prompts)
  loss_type          "grpo": token mean per completion, then mean (a long completion's tokens count less);
                     "dapo": mean over all tokens of the batch; "dr_grpo": sum / (completions * max_new_tokens)
  epsilon_low/high   the ratio is clipped to [1 - low, 1 + high]; high > low is DAPO's clip-higher, which
                     lets unlikely tokens that paid off grow faster than likely ones shrink
  beta               weight of the k3 KL to the frozen start checkpoint; 0 does not even load it (with LoRA
                     the start checkpoint is the base under the adapters: they are switched off to score it)
  use_bias_correction_kl  weight each token's k3 by the policy ratio, as TRL 1.16 does by default: its gradient
                     is then the unbiased reverse-KL gradient off-policy (README: where nanomath differs from TRL)
  num_iterations     updates per batch of rollouts: more reuse of each (slow) batch, more off-policy
  dynamic_sampling   drop groups whose rewards are all equal (zero advantage, no gradient) and draw more
                     prompts until prompts_per_step groups are informative. A round draws as many prompts as
                     should fill the batch at the informative share seen so far (the step's, or the last
                     step's): one batched round, with one tail of long rows, instead of several rounds of
                     prompts_per_step (faster for the same rollouts: README, Benchmarks), at most
                     max_sampling_rounds rounds and max_sampling_rounds x prompts_per_step prompts a step
  rollout_slack      a rollout that runs this many tokens past the length of its problem's reference completion
                     (tasks.completion) is cut there, as at max_new_tokens: a right solution takes the
                     reference's steps, so it has lost its way, and decoding it on to max_new_tokens would
                     hold up its whole batch (README: GRPO has the measurement)
  truncated          a completion cut at its limit without <|end|>: "mask" leaves it out of the loss
                     (DAPO's overlong filtering), "penalize" gives it reward 0 even if a number in it is right
  format_reward      bonus for the canonical <think>...</think>N<|end|> form, given only with a correct
                     answer: otherwise the policy could earn it by formatting wrong answers
  entropy_coef_*     entropy bonus, decayed linearly from start to end over max_iters
  sft_coef           + sft_coef x the NLL of sft_batch_size worked solutions of sft_train.jsonl in every update
                     (InstructGPT's PPO-ptx): solved problems give all-equal rewards and so no gradient,
                     and without an anchor the cells GRPO does not practise drift
  average_weight     the last checkpoint holds average_weight x the trained weights + the rest x the start
                     checkpoint's (or average_with's): WiSE-FT (Wortsman et al. 2022), a weight-space ensemble of
                     the fine-tuned model and the one it started from, keeps most of both: GRPO's gains past the
                     box, and the box where SFT had it. The trained weights stay in the checkpoint
                     (trained_model), and a resume continues from them

What is simplified, honestly
  - The reward looks at the final answer only; the worked steps are not checked (tasks.check_steps could).
  - The "old" log-probs of the ratio are the first update's own forward, detached, not the engine's: the
    engine computes them incrementally with the KV cache, which differs from a full forward by rounding
    (a lot under bf16) and would show up as spurious clipping. The difference is logged (sample_logp_diff).
  - With num_iterations=1 and beta=0 the ratio is exactly 1, the clip never binds, and this is REINFORCE
    with the group mean as baseline: "GRPO" in quotes, as nanochat says.
  - No mini-batches: each update is one forward/backward over the whole batch, fine at this scale.
  - top_k/top_p truncate the distribution that samples, but the ratio and KL use the full temperature-scaled
    one (identical at the defaults top_k=0, top_p=1).
  - DDP: each rank samples its own prompts (seeded by rank), DDP averages the gradients (dapo divides by the
    completion tokens of all ranks, as TRL does), and the logs show rank 0's rollouts.
  - Dynamic sampling that runs out of rounds trains on the informative groups it has (logged as groups).
"""
import copy
import math
import os
import random
import time
from dataclasses import asdict

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

import gsm8k
from batches import rollout_batch, sft_batch
from common import (setup, wrap_model, teardown, get_lr, optimizer_step, save_checkpoint, start_model,
                    reference_model, checkpoint_payload, check_out_dir, check_data, MetricsLog, read_jsonl,
                    read_problems, read_meta, load_checkpoint, model_from_checkpoint, descends_from)
from generation import generate, greedy_accuracy, greedy_correct, place_trackers
from configurator import configure
from lora import adapters_off, describe, is_adapted, settings
from model import token_logprobs
from task_mix import (auto_weights, check_weights, describe_edge, describe_mix, draw_problems, edge_problems,
                      edge_weights, file_problems, held_out_problems, measure_edge, rollout_limit,
                      without_exhausted_cells)
from tasks import box_longest, has_canonical_format
from tokenizer import get_tokenizer

# -----------------------------------------------------------------------------
# defaults: the small laptop run (README: GRPO); config/*.py and --key=value override them
out_dir = "out/grpo"
data_dir = "data/small"
init_from = "out/sft/ckpt.pt"        # an SFT or DPO checkpoint (also the KL reference), or "resume"
overwrite = False                    # True: a fresh run may replace the checkpoint in out_dir
eval_interval = 30
log_interval = 1
n_eval_problems = 140                # greedy exact match on this many problems of data_dir/sft_val.jsonl
# rollouts
prompts_per_step = 16
group_size = 8                       # completions per prompt; the advantage compares them with each other
max_new_tokens = 600                 # a 6-digit x*b=c's completion has ~580 tokens
rollout_slack = 16                   # a rollout stops this many tokens past its problem's reference completion
                                     # (or at max_new_tokens, where word problems always stop)
temperature = 1.0
top_k = 0                            # 0: no top-k cut
top_p = 1.0
task_weights = None                  # None: measured, where `practice` says (see above); or {type: weight}
practice = "edge"                    # "edge": lengths past the data's box and its longest; "box": its weakest cells;
                                     # "file": sft_train.jsonl's problems (word problems, e.g. GSM8K)
edge_lengths = 3                     # edge: the lengths 1..this many digits past the box
box_lengths = 2                      # edge: and the box's longest this many lengths, measured and weighed alike
edge_per_length = 12                 # edge: problems per type and length to measure it on, group_size samples each
edge_interval = 30                   # edge: measure it again every this many steps, as the model learns
auto_weight_floor = 0.005            # box: every cell keeps at least this error rate
dynamic_sampling = True
max_sampling_rounds = 4
truncated = "mask"                   # "mask" or "penalize"
format_reward = 0.0
# the loss
loss_type = "dapo"                   # "grpo", "dapo" or "dr_grpo"
scale_rewards = "group"              # "group", "batch" or "none"
num_iterations = 2                   # sampling is most of a step: a second update reuses it
epsilon_low = 0.2
epsilon_high = 0.28
beta = 0.0                           # KL weight; 0: no reference model
use_bias_correction_kl = False       # True: k3 x the policy ratio, TRL's default
entropy_coef_start = 0.0
entropy_coef_end = 0.0
sft_coef = 1.0                       # 0: no SFT anchor; without it the cells GRPO does not practise drift
sft_batch_size = 32
# WiSE-FT: the stage's checkpoint is an average of the trained weights and an earlier checkpoint's
average_with = ""                    # the checkpoint to average with; "": the one this run started from
average_weight = 0.75                # the trained weights' share (README: GRPO measures it); 1: no average
# AdamW and its schedule (min_lr = learning_rate gives a constant rate)
max_iters = 60
learning_rate = 1.5e-5
min_lr = 1.5e-5
warmup_iters = 10
lr_decay_iters = 0                   # 0 means max_iters
weight_decay = 0.0
beta1 = 0.9
beta2 = 0.99
grad_clip = 1.0
# LoRA (lora.py): adapters on the frozen start checkpoint, which is then also the KL reference (adapters off)
lora_rank = 0                        # 0: every weight trains; > 0: adapters of this rank, only they train
lora_alpha = 16.0                    # the adapters' update is scaled by lora_alpha / lora_rank
lora_dropout = 0.0
lora_targets = "all"                 # "attn", "mlp" or "all" (both)
quantize_base = "none"               # with LoRA: "int8" or "int4" weights for the frozen base (QLoRA's idea)
grad_checkpoint = False              # recompute block activations in the backward pass: less memory, more time
# system
device = "auto"
dtype = "auto"
compile = False                      # compiles the training forward; sampling stays eager
seed = 1337
# -----------------------------------------------------------------------------

LOSS_TYPES = ("grpo", "dapo", "dr_grpo")
SCALE_REWARDS = ("group", "batch", "none")


def compute_advantages(rewards, group_size, scale_rewards):
    """rewards (P*G,), G = group_size consecutive completions per prompt -> advantages (P*G,) and the fraction
    of groups whose rewards are all equal (their advantages are 0: they give no policy gradient)."""
    grouped = rewards.view(-1, group_size)                                # (P, G)
    advantages = grouped - grouped.mean(dim=1, keepdim=True)              # (P, G)
    if scale_rewards == "group":
        advantages = advantages / (grouped.std(dim=1, keepdim=True) + 1e-4)  # unbiased std, as GRPO and TRL
    elif scale_rewards == "batch":
        advantages = advantages / (rewards.std() + 1e-4)
    elif scale_rewards != "none":
        raise SystemExit(f"scale_rewards={scale_rewards!r}; allowed: {', '.join(SCALE_REWARDS)}")
    zero_std = (grouped == grouped[:, :1]).all(dim=1).float().mean().item()
    return advantages.reshape(-1), zero_std


def k3_kl(logps, ref_logps):
    """Schulman's k3 estimate of KL(policy || ref) from log-probs of tokens the policy sampled:
    exp(d) - d - 1 with d = ref - policy. Unbiased, never negative, lower variance than -d."""
    log_ratio = ref_logps - logps
    return torch.exp(log_ratio) - log_ratio - 1


def masked_mean(x, mask):
    """Mean of x over the True entries of mask; 0 when there are none (every completion masked out)."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def grpo_loss(logps, old_logps, ref_logps, advantages, completion_mask, loss_type, epsilon_low, epsilon_high,
              beta, max_len=None, use_bias_correction_kl=False, num_tokens=None):
    """The clipped surrogate plus beta * k3 KL. logps (with grad), old_logps, ref_logps (None: no KL term) and
    completion_mask are (B, T), per sampled token; advantages (B,). max_len is dr_grpo's constant (default T).
    use_bias_correction_kl multiplies each token's k3 by its ratio (with grad), as TRL's default does.
    num_tokens is dapo's divisor (default: this batch's completion tokens); under DDP, every rank's tokens
    over the number of ranks, as TRL does, so that DDP's mean of the gradients is the global token mean.
    Returns the loss and metrics: kl (mean KL term over completion tokens; only with a reference), clip_low,
    clip_high, clip_any (shares of completion tokens whose ratio the clip cut: below 1 - epsilon_low with
    A < 0, above 1 + epsilon_high with A > 0, either)."""
    mask = completion_mask.to(logps.dtype)
    ratio = torch.exp(logps - old_logps)                                  # (B, T)
    adv = advantages[:, None]                                             # (B, 1)
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    per_token = -torch.min(ratio * adv, clipped * adv)                    # (B, T)
    kl = None
    if ref_logps is not None:
        kl = k3_kl(logps, ref_logps)                                      # (B, T)
        if use_bias_correction_kl:
            kl = kl * ratio
        per_token = per_token + beta * kl
    if loss_type == "grpo":
        loss = ((per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)).mean()
    elif loss_type == "dapo":
        loss = masked_mean(per_token, mask) if num_tokens is None else (per_token * mask).sum() / num_tokens
    elif loss_type == "dr_grpo":
        loss = (per_token * mask).sum() / (logps.size(0) * (max_len or logps.size(1)))
    else:
        raise SystemExit(f"loss_type={loss_type!r}; allowed: {', '.join(LOSS_TYPES)}")
    with torch.no_grad():
        low = (ratio < 1 - epsilon_low) & (adv < 0)
        high = (ratio > 1 + epsilon_high) & (adv > 0)
        metrics = {"clip_low": masked_mean(low, mask).item(), "clip_high": masked_mean(high, mask).item(),
                   "clip_any": masked_mean(low | high, mask).item()}
        if kl is not None:
            metrics["kl"] = masked_mean(kl, mask).item()
    return loss, metrics


def token_entropy(logits, temperature):
    """Entropy of each temperature-scaled next-token distribution, aligned like token_logprobs' output:
    logits (R, T, vocab) -> (R, T-1)."""
    logp = F.log_softmax(logits[:, :-1].float() / temperature, dim=-1)   # (R, T-1, vocab)
    return -(logp.exp() * logp).sum(dim=-1)


def average_state(trained, other, weight):
    """WiSE-FT's weight-space ensemble of two state dicts of one shape: weight x trained + (1 - weight) x other,
    tensor by tensor, in float32 (then back to each tensor's dtype)."""
    return {k: torch.lerp(other[k].to(v.device).float(), v.float(), weight).to(v.dtype) for k, v in trained.items()}


# -----------------------------------------------------------------------------
# problems and rewards


def check_config():
    if group_size < 2:
        raise SystemExit(f"group_size={group_size}: advantages compare the completions of a prompt with each "
                         "other, so they need a group; use group_size >= 2")
    for key, allowed in (("loss_type", LOSS_TYPES), ("scale_rewards", SCALE_REWARDS),
                         ("truncated", ("mask", "penalize")), ("practice", ("edge", "box", "file"))):
        if globals()[key] not in allowed:
            raise SystemExit(f"{key}={globals()[key]!r}; allowed: {', '.join(allowed)}")
    if sft_coef < 0:
        raise SystemExit(f"sft_coef must be >= 0, got {sft_coef}")
    if auto_weight_floor <= 0:
        raise SystemExit(f"auto_weight_floor must be > 0 (every cell keeps a little practice), got {auto_weight_floor}")
    if temperature <= 0:
        raise SystemExit(f"temperature={temperature}: GRPO needs sampling (> 0), or every group is identical")
    if task_weights is not None and not isinstance(task_weights, dict):
        raise SystemExit(f"task_weights must be None (auto) or a dict {{type: weight}}, got {task_weights!r}")
    if practice == "edge" and task_weights is None and edge_lengths + box_lengths == 0:
        raise SystemExit("edge_lengths=0 and box_lengths=0: the edge would measure no length; give one of them > 0")
    if not 0 <= average_weight <= 1:
        raise SystemExit(f"average_weight={average_weight}: the trained weights' share of the average is 0 to 1")
    if task_weights is not None and practice == "file":
        raise SystemExit("task_weights weighs the task generator's types, but practice='file' draws the problems of "
                         "sft_train.jsonl: drop task_weights, or practise with 'edge' or 'box'")


def check_family(meta, data_dir):
    """Practice at the edge or in the box measures digit counts: only arithmetic data has them. Data written
    before word problems has no family key, and is arithmetic."""
    family = meta.get("family", "arithmetic")
    if practice != "file" and family != "arithmetic":
        raise SystemExit(f"{data_dir}/meta.json: family {family!r} has no digit box to practise at "
                         f"(practice={practice!r}); use --practice=file (the problems of sft_train.jsonl)")
    return family


def reward(problem, text, stopped, truncated="mask", format_reward=0.0):
    """1 for a correct answer (+ format_reward if also canonical), else 0; with truncated="penalize", 0 for
    a completion that did not stop. Graded as eval.py grades: a completion that did not stop may run on into a
    question of its own ('\\n\\nQuestion:'), whose answer is not its answer: gsm8k.is_correct cuts it off."""
    if (truncated == "penalize" and not stopped) or not gsm8k.is_correct(text, problem.answer):
        return 0.0
    return 1.0 + (format_reward if has_canonical_format(text) else 0.0)


# -----------------------------------------------------------------------------
# rollouts


def informative_share_of(stats):
    """The share of the sampled groups (collect_batch's stats) whose rewards differ."""
    return 1 - stats["zero_std"] / stats["groups"]


def round_prompts(missing, informative_share, drawn):
    """Prompts for the next sampling round: enough to fill the `missing` groups at the expected share of
    informative groups, within the step's budget of max_sampling_rounds x prompts_per_step (`drawn` so far)."""
    wanted = math.ceil(missing / max(informative_share, 1 / max_sampling_rounds))
    return min(wanted, max_sampling_rounds * prompts_per_step - drawn)


@torch.no_grad()
def collect_batch(model, tok, rt, weights, held_out, iter_num, pool=None, informative_share=1.0):
    """The rollouts of one step: each round draws problems (from the task mix `weights`, or from `pool`, the
    problems of practice='file') and samples group_size completions of each in one batched generate (the
    prompt repeated group_size times). Without dynamic_sampling one round of prompts_per_step is kept whole;
    with it, only groups whose rewards differ, until prompts_per_step are kept or max_sampling_rounds have
    run; a round draws round_prompts(...) problems, sized by the informative share of the groups sampled so
    far in this step, or before the first round by informative_share (the last step's).
    Returns the kept rows {prompts, completions, sample_logps, stopped, rewards} and stats of all rollouts."""
    model.eval()
    rows = {k: [] for k in ("prompts", "completions", "sample_logps", "stopped", "rewards")}
    stats = {"rewards": [], "lengths": [], "stopped": [], "groups": 0, "zero_std": 0, "seconds": 0.0}
    for round_idx in range(max_sampling_rounds if dynamic_sampling else 1):
        # the share of informative groups: this step's so far, or before its first round the last step's
        share = informative_share_of(stats) if stats["groups"] else informative_share
        n_prompts = (round_prompts(prompts_per_step - len(rows["rewards"]) // group_size, share, stats["groups"])
                     if dynamic_sampling else prompts_per_step)
        if n_prompts <= 0:
            break
        t0 = time.time()
        # rollouts depend only on (seed, rank, iteration, round) and the share: a resumed run samples what it
        # would have (the share is in the checkpoint)
        round_seed = int(np.random.SeedSequence([seed, rt.rank, iter_num, round_idx]).generate_state(1)[0])
        rng = random.Random(round_seed)
        problems = (rng.choices(pool, k=n_prompts) if pool else draw_problems(n_prompts, weights, held_out, rng))
        prompts = [tok.encode(p.prompt) for p in problems for _ in range(group_size)]
        limits = [rollout_limit(tok, p, rollout_slack, max_new_tokens) for p in problems for _ in range(group_size)]
        with rt.autocast:
            gen = generate(model, prompts, max_new_tokens, temperature, top_k, top_p, stop_ids=(tok.end_id,),
                           generator=torch.Generator(rt.device).manual_seed(round_seed),
                           trackers=place_trackers(model, tok, prompts), limits=limits)
        completions, stopped = gen.token_lists(), gen.stopped.tolist()
        sample_logps = gen.logprobs.float().cpu()                          # (P*G, N)
        rewards = [reward(problems[i // group_size], tok.decode(c), s, truncated, format_reward)
                   for i, (c, s) in enumerate(zip(completions, stopped))]
        grouped = torch.tensor(rewards).view(-1, group_size)               # (P, G)
        informative = (grouped != grouped[:, :1]).any(dim=1).tolist()
        stats["seconds"] += time.time() - t0
        stats["rewards"] += rewards
        stats["lengths"] += [len(c) for c in completions]
        stats["stopped"] += stopped
        stats["groups"] += len(problems)
        stats["zero_std"] += informative.count(False)
        for g in range(len(problems)):
            if len(rows["rewards"]) == prompts_per_step * group_size:
                break
            if dynamic_sampling and not informative[g]:
                continue
            for i in range(g * group_size, (g + 1) * group_size):
                rows["prompts"].append(prompts[i])
                rows["completions"].append(completions[i])
                rows["sample_logps"].append(sample_logps[i, :len(completions[i])])
                rows["stopped"].append(stopped[i])
                rows["rewards"].append(rewards[i])
        if len(rows["rewards"]) == prompts_per_step * group_size:
            break
    return rows, stats


def measure_practice(model, tok, rt, task_digits, held_out, iter_num, log=None):
    """The edge mix: sample group_size completions of edge_per_length fresh problems per type and length past
    the box, and of its box_lengths longest lengths (seeded by the step, so a resumed run measures what it
    would have), and weigh each by its share of informative groups. Under DDP every rank measures the same
    problems with the same seed, so the ranks agree without a broadcast (the work is done world_size times).
    The lengths count from the longest operand of any type: for a type whose own box is shorter, some of the
    box's lengths lie past it."""
    longest = box_longest(task_digits)
    problems = edge_problems(task_digits, range(longest + 1 - box_lengths, longest + 1 + edge_lengths),
                             edge_per_length, held_out, random.Random(f"{seed}-edge-{iter_num}"))
    rates = measure_edge(model, tok, rt, problems, group_size, max_new_tokens, seed + iter_num, rollout_slack)
    weights = edge_weights(rates, task_digits, group_size)
    if rt.master:
        print(f"step {iter_num}: the edge (sampled accuracy / share of informative groups, by length)\n"
              + describe_edge(rates, group_size, longest))
        if log:
            log.write(iter=iter_num, split="edge", **{f"{t}/{n}": float(np.mean(r)) for (t, n), r in rates.items()})
    if not weights:
        raise SystemExit(f"step {iter_num}: no problem measured (the box's longest {box_lengths} lengths and "
                         f"{edge_lengths} past it) gives a group whose rewards differ: every one is always right "
                         "or always wrong; change edge_lengths or box_lengths")
    return weights


def average_partner(model, start):
    """The path and weights (on the CPU) of the checkpoint to average with: average_with, or the start checkpoint.
    Checked before any time is spent training: the model's shape, and a checkpoint the start descends from."""
    path = average_with or start
    fix = "pass --average_with=<a checkpoint this run descends from>, or --average_weight=1 for no average"
    if not os.path.exists(path):
        raise SystemExit(f"average_with={path}: no such checkpoint to average the trained weights with; {fix}")
    other = model_from_checkpoint(load_checkpoint(path), "cpu")
    if asdict(other.config) | {"dropout": 0.0} != asdict(model.config) | {"dropout": 0.0}:
        raise SystemExit(f"average_with={path} is another model than the one GRPO trains (its shape differs); {fix}")
    if not descends_from(start, path):
        raise SystemExit(f"average_with={path} is not a checkpoint that {start} was trained from (by the init_from "
                         f"the checkpoints record): an average with another run's weights means nothing; {fix}")
    return path, other.state_dict()


def mean_over_ranks(value, rt):
    """A float averaged over the DDP ranks (itself without DDP), so that every rank acts on the same number."""
    if not rt.ddp:
        return value
    t = torch.tensor(float(value), device=rt.device)
    dist.all_reduce(t)
    return t.item() / rt.world_size


def check_filled(n_groups, mean_reward, rt):
    """Stop if dynamic sampling kept no group at all (on any rank): every prompt's completions were all
    right or all wrong, so there is nothing to learn from at this checkpoint."""
    n_groups = torch.tensor(float(n_groups), device=rt.device)
    if rt.ddp:
        dist.all_reduce(n_groups, op=dist.ReduceOp.MIN)
    m = mean_over_ranks(mean_reward, rt)
    if n_groups.item() == 0:
        raise SystemExit(f"dynamic sampling: {max_sampling_rounds * prompts_per_step} prompts gave no group "
                         f"with differing rewards (mean reward {m:.3f}): the tasks are too "
                         f"{'easy' if m >= 0.5 else 'hard'} for this checkpoint; change task_weights or the data's "
                         "digits, or start from another checkpoint")


# -----------------------------------------------------------------------------
# the update


def policy_update(model, reference, optimizer, rollouts, advantages, lr, entropy_coef, anchor, rt):
    """num_iterations clipped policy-gradient steps on one batch of rollouts (batches.rollout_batch: packed
    rows idx, where, and each rollout's token_index, completion mask and sampling-time log-probs), each with
    the SFT anchor's NLL on the (x, y, where) batch anchor (batches.sft_batch) if it is not None. Returns the
    metrics averaged over the steps."""
    idx, where, token_index, mask, sample_logps = rollouts
    model.train()
    ref_logps = None
    if reference is not None:
        with torch.no_grad(), rt.autocast, adapters_off(reference):
            ref_logps = token_logprobs(reference(idx, **where)[0], idx, temperature).flatten()[token_index]
    num_tokens = None
    if rt.ddp:   # dapo's divisor: the completion tokens of all ranks, per rank
        num_tokens = mask.sum().float()
        dist.all_reduce(num_tokens)
        num_tokens = num_tokens.clamp(min=1) / rt.world_size
    totals = {}
    for it in range(num_iterations):
        with rt.autocast:
            logits, _ = model(idx, **where)                               # (R, T, vocab): packed rows
        # each rollout's completion tokens, unpacked: (B, M), at the sampling temperature
        logps = token_logprobs(logits, idx, temperature).flatten()[token_index]
        if it == 0:
            old_logps = logps.detach()  # the policy that sampled, before any update: the first ratio is exactly 1
            totals["sample_logp_diff"] = masked_mean((old_logps - sample_logps).abs(), mask).item()
        loss, metrics = grpo_loss(logps, old_logps, ref_logps, advantages, mask, loss_type, epsilon_low,
                                  epsilon_high, beta, max_new_tokens, use_bias_correction_kl, num_tokens)
        entropy = masked_mean(token_entropy(logits if entropy_coef else logits.detach(), temperature).flatten()
                              [token_index], mask)
        (loss - entropy_coef * entropy).backward()
        if anchor is not None:   # its own forward and backward: the gradients add up (DDP too: two all-reduces)
            with rt.autocast:
                x, y, anchor_where = anchor
                sft_loss = model(x, y, **anchor_where)[1]
            (sft_coef * sft_loss).backward()
            metrics["sft_loss"] = sft_loss.item()
        metrics.update(loss=loss.item(), entropy=entropy.item(),
                       grad_norm=optimizer_step(model, optimizer, lr, grad_clip))
        for k, v in metrics.items():
            totals[k] = totals.get(k, 0.0) + v / num_iterations
    return totals


def main():
    config = configure(globals())
    check_config()
    rt = setup(device, dtype, seed)
    check_out_dir(out_dir, init_from == "resume", overwrite)
    meta = read_meta(data_dir)
    tok = get_tokenizer(meta["tokenizer"])
    family = check_family(meta, data_dir)
    task_digits = meta.get("config", {}).get("tasks")
    if not task_digits and practice != "file":
        raise SystemExit(f"{data_dir}/meta.json has no config.tasks (the digit counts of each type): "
                         "regenerate the data with generate_pairs.py")
    if practice == "edge" and task_weights is None and box_lengths > box_longest(task_digits):
        raise SystemExit(f"box_lengths={box_lengths}: the data's box has lengths 1 to {box_longest(task_digits)}")
    decay_iters = lr_decay_iters or max_iters

    model, ckpt, resuming, ckpt_path = start_model(init_from, out_dir, rt, dropout=0.0, stage="grpo",
                                                   lora=settings(config))
    model.grad_checkpoint = grad_checkpoint
    if resuming and "trained_model" in ckpt:   # the last checkpoint holds the average: go on from the trained weights
        model.load_state_dict(ckpt["trained_model"])
    if average_weight < 1 and is_adapted(model):   # lora_rank > 0, or a resumed LoRA run's own adapters
        raise SystemExit(f"average_weight={average_weight} averages whole models, and this run trains LoRA "
                         "adapters: pass --average_weight=1 with LoRA")
    check_data(ckpt["tokenizer"], ckpt["model_args"]["vocab_size"], meta, ckpt_path, data_dir)
    optimizer = model.configure_optimizers(weight_decay, learning_rate, (beta1, beta2), rt.device_type)
    iter_num = 0
    tokens_seen = 0
    informative_share = 1.0   # of the last step's sampled groups: sizes the next step's sampling round
    if resuming:
        optimizer.load_state_dict(ckpt["optimizer"])
        iter_num, tokens_seen = ckpt["iter_num"], ckpt["tokens_seen"]
        informative_share = ckpt.get("informative_share", 1.0)   # absent in checkpoints written before it
    # the KL reference is the checkpoint the run started from, also after a resume (its path is in the checkpoint)
    reference_from = ckpt["reference_from"] if resuming else init_from
    reference = reference_model(model, resuming, reference_from, rt.device) if beta > 0 else None
    partner_path, partner_state = average_partner(model, reference_from) if average_weight < 1 else (None, None)

    log = MetricsLog(out_dir, resume_iter=iter_num if resuming else None) if rt.master else None
    held_out_list = held_out_problems(data_dir, family)
    held_out = frozenset(p.prompt for p in held_out_list)
    sft_rows = read_jsonl(os.path.join(data_dir, "sft_train.jsonl"), ("prompt", "completion")) if sft_coef else []
    val_problems = read_problems(os.path.join(data_dir, "sft_val.jsonl"))
    eval_problems = val_problems[:n_eval_problems]
    weights, pool = None, None
    if practice == "file":
        pool = file_problems(data_dir, held_out)
    elif task_weights is not None:
        weights = check_weights(task_weights, task_digits, data_dir)
    elif resuming:
        weights = ckpt["task_weights"]   # measured on the start checkpoint, not remeasured on a trained one
        if all(isinstance(key, str) for key in weights):   # written before the mix had cells: the same mix
            weights = check_weights(weights, task_digits, data_dir)
    elif practice == "edge":
        weights = measure_practice(model, tok, rt, task_digits, held_out, 0, log)
    else:
        correct = greedy_correct(model, tok, val_problems, rt, max_new_tokens)
        weights = auto_weights(val_problems, correct, auto_weight_floor)
    if weights is not None:
        weights = without_exhausted_cells(weights, held_out_list)
    del ckpt

    model, raw_model = wrap_model(model, rt, compile)
    if rt.master:
        print(f"{describe(raw_model)} from {ckpt_path}, reference: "
              f"{reference_from if beta > 0 else 'none (beta=0)'}, {prompts_per_step} prompts x {group_size} "
              f"completions per step, device {rt.device} ({rt.dtype}), {rt.world_size} process(es)")
        print(f"practice: the {len(pool):,} problems of {data_dir}/sft_train.jsonl" if pool else
              "task mix (type share: heaviest digit-count cells)\n" + describe_mix(weights))

    def evaluate(what):
        acc = greedy_accuracy(raw_model, tok, eval_problems, rt, max_new_tokens)
        print(f"{what}: greedy accuracy {acc['overall']:.3f} on {len(eval_problems)} held-out problems")
        print("  " + ", ".join(f"{t} {a:.2f}" for t, a in acc.items() if t != "overall"))
        return acc

    def save(accuracy, **extra):   # the step's checkpoint: iter_num, weights and the counters as they are now
        save_checkpoint(os.path.join(out_dir, "ckpt.pt"),
                        **checkpoint_payload(raw_model, optimizer, config, iter_num, meta, stage="grpo",
                                             reference_from=reference_from, task_weights=weights, accuracy=accuracy,
                                             tokens_seen=tokens_seen, informative_share=informative_share, **extra))

    t_start = time.time()
    while True:
        lr = get_lr(iter_num, learning_rate, min_lr, warmup_iters, decay_iters)
        if rt.master and (iter_num % eval_interval == 0 or iter_num == max_iters):
            acc = evaluate(f"step {iter_num}")
            log.write(iter=iter_num, split="eval", accuracy=acc, lr=lr, elapsed_s=time.time() - t_start)
            # the last step's checkpoint is the average, written below (the trained weights in it)
            if (iter_num > 0 or max_iters == 0) and not (iter_num == max_iters and partner_state is not None):
                save(acc)
        if iter_num >= max_iters:
            break

        if practice == "edge" and task_weights is None and iter_num % edge_interval == 0 and iter_num > 0:
            weights = without_exhausted_cells(measure_practice(raw_model, tok, rt, task_digits, held_out, iter_num,
                                                               log), held_out_list)
        t0 = time.time()
        rows, stats = collect_batch(raw_model, tok, rt, weights, held_out, iter_num, pool, informative_share)
        informative_share = mean_over_ranks(informative_share_of(stats), rt)
        tokens_seen += sum(stats["lengths"]) * rt.world_size  # sampled tokens, across ranks
        check_filled(len(rows["rewards"]) // group_size, float(np.mean(stats["rewards"])), rt)
        advantages, _ = compute_advantages(torch.tensor(rows["rewards"]), group_size, scale_rewards)
        rollouts = rollout_batch(rows, tok, rt.device, rows["stopped"] if truncated == "mask" else None)
        entropy_coef = entropy_coef_start + (entropy_coef_end - entropy_coef_start) * iter_num / max_iters
        anchor = None
        if sft_rows:
            # seeded by the step, so a resumed run fits the same anchor batches (a PCG64 stream of its own,
            # apart from the rollouts' random.Random and torch generators)
            anchor_rng = np.random.default_rng([seed, rt.rank, iter_num, 1])
            ix = anchor_rng.integers(len(sft_rows), size=sft_batch_size)
            anchor = sft_batch(sft_rows, ix, tok, raw_model.config.block_size, rt.device)
        metrics = policy_update(model, reference, optimizer, rollouts, advantages.to(rt.device), lr, entropy_coef,
                                anchor, rt)
        iter_num += 1

        if rt.master and iter_num % log_interval == 0:
            dt = time.time() - t0
            r = np.array(stats["rewards"])
            kept = len(rows["rewards"]) // group_size
            row = dict(reward_mean=r.mean(), reward_std=r.std(), zero_std_frac=stats["zero_std"] / stats["groups"],
                       dropped_frac=1 - kept / stats["groups"], groups=kept, **metrics,
                       length_mean=float(np.mean(stats["lengths"])), length_max=max(stats["lengths"]),
                       truncated_frac=1 - float(np.mean(stats["stopped"])),
                       sample_tokens_per_s=sum(stats["lengths"]) / stats["seconds"],
                       sample_share=stats["seconds"] / dt, entropy_coef=entropy_coef)
            extra_text = "".join(f"{k} {metrics[k]:.4f}, " for k in ("kl", "sft_loss") if k in metrics)
            print(f"iter {iter_num}: reward {row['reward_mean']:.3f}, zero-std {row['zero_std_frac']:.2f}, "
                  f"dropped {row['dropped_frac']:.2f}, loss {metrics['loss']:.4f}, {extra_text}"
                  f"entropy {metrics['entropy']:.3f}, clip {metrics['clip_low']:.3f}/{metrics['clip_high']:.3f}, "
                  f"len {row['length_mean']:.1f}/{row['length_max']} (truncated {row['truncated_frac']:.2f}), "
                  f"time {dt * 1000:.0f}ms ({row['sample_share'] * 100:.0f}% sampling, "
                  f"{row['sample_tokens_per_s']:,.0f} tok/s), lr {lr:.2e}")
            log.write(iter=iter_num, split="train", **{k: float(v) for k, v in row.items()}, lr=lr,
                      ms_per_iter=dt * 1000, elapsed_s=time.time() - t_start)
    if rt.master and partner_state is not None:
        # WiSE-FT: the stage's checkpoint is the average; the trained weights stay in it, for a resume
        trained = copy.deepcopy(raw_model.state_dict())   # one copy: tied weights stay one tensor
        raw_model.load_state_dict(average_state(trained, partner_state, average_weight))
        acc = evaluate(f"the average {average_weight:g} x trained + {1 - average_weight:g} x {partner_path}")
        log.write(iter=iter_num, split="average", accuracy=acc, elapsed_s=time.time() - t_start)
        save(acc, trained_model=trained, average_with=partner_path)
    if rt.master:
        print(f"done in {time.time() - t_start:.1f}s; checkpoint {os.path.join(out_dir, 'ckpt.pt')}")
    teardown(rt)


if __name__ == "__main__":
    main()
