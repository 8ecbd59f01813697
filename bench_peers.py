"""
nanomath against what users compare it with, side by side in one run, as ratios (machines are noisy: compare
within a run, not across runs). Both at the small shape (4 layers, width 128, 4 heads), random weights, and
equal generated tokens (no row stops early):

- generation: nanomath's KV-cache engine (generation.generate) against nanochat's Engine (nanochat/engine.py),
  one prompt sampled batch-size times, as GRPO samples a group;
- one GRPO step: prompts x group_size completions of completion_tokens tokens, then num_iterations clipped
  updates on them (train_grpo.py's step: its sampling, batches.rollout_batch and policy_update) against TRL's GRPOTrainer
  doing the same (num_iterations, dapo, no KL), on a Llama of the same shape (SwiGLU at nanomath's width).

    python bench_peers.py --nanochat_dir=../nanochat     # a clone of github.com/karpathy/nanochat
    pip install trl==1.16.0 && python bench_peers.py     # TRL's GRPOTrainer (pulls transformers, accelerate)
    python bench_peers.py --dtype=bfloat16 ...           # nanochat reads the same precision (NANOCHAT_DTYPE)

A peer that is not there is skipped with a line that says why. README: Benchmarks has the measured table.
Neither peer is a dependency of nanomath: this script is the only place that imports them.
"""
import os
import sys
import time
import warnings

import torch

import train_grpo
from batches import rollout_batch
from common import setup
from configurator import configure
from generation import generate, place_trackers
from model import GPT, GPTConfig
from tokenizer import get_tokenizer

n_layer = 4
n_head = 4
n_embd = 128
pos = "coupled"             # train_pretrain.py's default positions (they cost a place tracker per row)
gen_batch_sizes = "64,128"  # generation: rows of one prompt
gen_tokens = 100
prompts = 16                # GRPO step: prompts x group_size completions of completion_tokens tokens
group_size = 8
completion_tokens = 100
repeats = 3                 # timed repetitions of each measurement, after one warm-up; the median is reported
nanochat_dir = ""           # a nanochat clone; "" skips it
trl = True                  # False skips TRL (also skipped when it is not installed)
device = "cpu"
dtype = "float32"
seed = 1337

PROMPT = "123*456=?"


def median(xs):
    return sorted(xs)[len(xs) // 2]


def nanomath_model(tok):
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=tok.vocab_size, block_size=320, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                       pos=pos)
    return GPT(config).to(device)


def time_nanomath_generation(model, tok, rt, batch):
    """Seconds and tokens of one batch of samples of PROMPT, no stop token."""
    prompt_rows = [tok.encode(PROMPT)] * batch
    t0 = time.perf_counter()
    with rt.autocast:
        gen = generate(model, prompt_rows, gen_tokens, temperature=1.0, stop_ids=(),
                       generator=torch.Generator(device).manual_seed(seed),
                       trackers=place_trackers(model, tok, prompt_rows))
    return time.perf_counter() - t0, int(gen.mask.sum())


def nanochat_engine(tok):
    """nanochat's Engine over its own GPT at nanomath's shape, or None and why not."""
    if not nanochat_dir:
        return None, "no --nanochat_dir (a clone of github.com/karpathy/nanochat)"
    os.environ["NANOCHAT_DTYPE"] = dtype   # its compute dtype is read once, at import
    sys.path.insert(0, os.path.abspath(nanochat_dir))
    try:
        from nanochat.engine import Engine
        from nanochat.gpt import GPT as NanochatGPT, GPTConfig as NanochatConfig
    except ImportError as e:
        return None, f"nanochat does not import from {nanochat_dir}: {e}"

    class NoSpecialTokens:   # the Engine asks for its chat tokens; ids that are never sampled
        def encode_special(self, text):
            return -1

        def get_bos_token_id(self):
            return -2

    config = NanochatConfig(sequence_len=320, vocab_size=tok.vocab_size, n_layer=n_layer, n_head=n_head,
                            n_kv_head=n_head, n_embd=n_embd, window_pattern="L")
    with torch.device("meta"):   # nanochat builds on the meta device, then initialises (its gpt.py)
        model = NanochatGPT(config)
    model.to_empty(device=device)
    model.init_weights()
    return Engine(model.eval(), NoSpecialTokens()), ""


def time_nanochat_generation(engine, tok, batch):
    t0, n = time.perf_counter(), 0
    for column, _ in engine.generate(tok.encode(PROMPT), num_samples=batch, max_tokens=gen_tokens,
                                     temperature=1.0, seed=seed):
        n += len(column)
    return time.perf_counter() - t0, n


def bench_generation(tok, rt):
    model = nanomath_model(tok).eval()
    engine, why = nanochat_engine(tok)
    print(f"\n| generation, {dtype}: one prompt x batch, {gen_tokens} new tokens | nanomath tokens/s | "
          f"nanochat Engine tokens/s | nanomath / nanochat (above 1: nanomath faster) |\n|---|---:|---:|---:|")
    for batch in [int(b) for b in gen_batch_sizes.split(",")]:
        ours, theirs = [], []
        for r in range(repeats + 1):
            seconds, n = time_nanomath_generation(model, tok, rt, batch)
            ours.append(n / seconds)
            if engine is not None:   # interleaved, so that both see the same machine
                seconds, n = time_nanochat_generation(engine, tok, batch)
                theirs.append(n / seconds)
        ours, theirs = median(ours[1:]), median(theirs[1:]) if theirs else None
        print(f"| batch {batch} | {ours:,.0f} | {f'{theirs:,.0f}' if theirs else '-'} | "
              f"{f'{ours / theirs:.2f}x' if theirs else '-'} |")
    if engine is None:
        print(f"nanochat skipped: {why}")


def nanomath_grpo_step(model, optimizer, tok, rt):
    """One train_grpo.py step on random rewards: sample prompts x group_size rows in one batch, then
    num_iterations clipped updates (policy_update; no SFT anchor, no KL reference, as in TRL's step)."""
    prompt_rows = [tok.encode(PROMPT)] * (prompts * group_size)
    t0 = time.perf_counter()
    model.eval()
    with rt.autocast:
        gen = generate(model, prompt_rows, completion_tokens, temperature=1.0, stop_ids=(),
                       trackers=place_trackers(model, tok, prompt_rows))
    rows = {"prompts": prompt_rows, "completions": gen.token_lists(),
            "sample_logps": [lp[m] for lp, m in zip(gen.logprobs, gen.mask)]}
    advantages, _ = train_grpo.compute_advantages(torch.rand(len(prompt_rows)), group_size, "group")
    train_grpo.policy_update(model, None, optimizer, rollout_batch(rows, tok, device), advantages.to(device),
                             train_grpo.learning_rate, 0.0, None, rt)
    return time.perf_counter() - t0


def trl_trainer(tok):
    """TRL's GRPOTrainer set up for the same step, or None and why not."""
    if not trl:
        return None, "--trl=False"
    try:
        import trl as trl_package
        from datasets import Dataset
        from tokenizers import Tokenizer, models, pre_tokenizers
        from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, TrainerCallback
    except ImportError as e:
        return None, f"TRL is not installed ({e}): pip install trl==1.16.0"
    warnings.filterwarnings("ignore", category=FutureWarning)   # transformers renaming its own options
    # nanomath's math tokens as a Hugging Face tokenizer: one token a character, as the math tokenizer has
    vocab = {s: i for i, s in enumerate(tok.decode_tokens(range(tok.vocab_size)))}
    hf_tok = Tokenizer(models.WordLevel(vocab, unk_token="?"))
    hf_tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    end = tok.decode_tokens([tok.end_id])[0]
    processing = PreTrainedTokenizerFast(tokenizer_object=hf_tok, eos_token=end, pad_token=end)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=tok.vocab_size, hidden_size=n_embd, num_hidden_layers=n_layer,
                                         num_attention_heads=n_head, intermediate_size=int(8 * n_embd / 3),
                                         max_position_embeddings=320, tie_word_embeddings=True,
                                         eos_token_id=tok.end_id, pad_token_id=tok.end_id))
    steps = train_grpo.num_iterations * (repeats + 1)
    args = trl_package.GRPOConfig(
        output_dir=os.path.join("out", "bench_trl"), report_to="none", save_strategy="no", logging_steps=10 ** 6,
        use_cpu=device == "cpu", bf16=dtype == "bfloat16", max_steps=steps, seed=seed, dataloader_num_workers=0,
        per_device_train_batch_size=prompts * group_size, gradient_accumulation_steps=1, num_generations=group_size,
        max_completion_length=completion_tokens, generation_kwargs={"min_new_tokens": completion_tokens},
        temperature=1.0, num_iterations=train_grpo.num_iterations, loss_type=train_grpo.loss_type,
        epsilon=train_grpo.epsilon_low, epsilon_high=train_grpo.epsilon_high, beta=0.0,
        learning_rate=train_grpo.learning_rate, max_grad_norm=train_grpo.grad_clip, disable_tqdm=True)
    step_ends = []

    class StepTimes(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            step_ends.append(time.perf_counter())

    trainer = trl_package.GRPOTrainer(
        model=model, args=args, processing_class=processing, callbacks=[StepTimes()],
        reward_funcs=lambda completions, **kw: torch.rand(len(completions)).tolist(),
        train_dataset=Dataset.from_dict({"prompt": [PROMPT] * (prompts * steps)}))
    return (trainer, step_ends), ""


def bench_grpo_step(tok, rt):
    model = nanomath_model(tok)
    optimizer = model.configure_optimizers(train_grpo.weight_decay, train_grpo.learning_rate,
                                           (train_grpo.beta1, train_grpo.beta2), rt.device_type)
    ours = [nanomath_grpo_step(model, optimizer, tok, rt) for _ in range(repeats + 1)][1:]
    peer, why = trl_trainer(tok)
    theirs = None
    if peer is not None:
        trainer, step_ends = peer
        trainer.train()
        k = train_grpo.num_iterations   # a sampling and its updates are k of TRL's steps
        theirs = [b - a for a, b in zip(step_ends[k - 1::k], step_ends[2 * k - 1::k])]
    print(f"\n| GRPO step, {dtype}: {prompts} prompts x {group_size} x {completion_tokens} tokens, then "
          f"{train_grpo.num_iterations} updates | nanomath s | TRL GRPOTrainer s | "
          f"TRL / nanomath (above 1: nanomath faster) |\n|---|---:|---:|---:|")
    line = f"| one step (median of {repeats}) | {median(ours):.2f} | "
    print(line + (f"{median(theirs):.2f} | {median(theirs) / median(ours):.2f}x |" if theirs else "- | - |"))
    if peer is None:
        print(f"TRL skipped: {why}")


def main():
    configure(globals())
    rt = setup(device, dtype, seed)
    tok = get_tokenizer("math")
    print(f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, {n_layer} layers, width {n_embd}, "
          f"{n_head} heads, nanomath pos={pos}")
    bench_generation(tok, rt)
    bench_grpo_step(tok, rt)


if __name__ == "__main__":
    main()
