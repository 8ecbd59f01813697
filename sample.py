"""
Complete arithmetic prompts with a checkpoint, printing the tokens as they are produced.

    python sample.py --ckpt=out/sft/ckpt.pt --prompt="17+19=?"
    python sample.py --ckpt=out/sft/ckpt.pt --prompt="17+19=?|x*7=2415, x=?" --show_tokens=True
    python sample.py --ckpt=out/sft/ckpt.pt --temperature=0.8 --top_k=5
    python sample.py --ckpt=out/sft_lora/ckpt.pt --merge_lora=False   # LoRA adapters kept apart from the base
    python sample.py --ckpt=out/sft/ckpt.pt        # interactive: >>> 17+19=?   (quit, Ctrl-D or Ctrl-C to leave)

Spaces are dropped (`3 + 4 = ?` is run as `3+4=?`). When a prompt is one of the task forms, the extracted answer
is checked against the true one; any other prompt is run and said to be unchecked.
A word-problem checkpoint (family 'words' or 'gsm8k': README, Word problems) takes a question as written and
runs it as it trained, "Question: ...\nAnswer:"; its answer is extracted but cannot be checked:

    python sample.py --ckpt=out/words_sft/ckpt.pt --prompt="Mia has 12 apples. She buys 5 more. How many apples does Mia have now?"

GSM8K's calculator writes the result of each `<<12+5=` the model opens (`--calculator=exact`, the default, as
the README measures word problems); `--calculator=` leaves the arithmetic to the model.
"""
import re
from contextlib import nullcontext

import torch

import gsm8k
from common import setup, load_checkpoint, model_from_checkpoint
from configurator import configure
from generation import KVCache, sample_next, token_tool
from places import PlaceTracker
from tasks import extract_answer, is_correct, normalize_prompt, not_a_task, outside_box, parse_prompt
from tokenizer import get_tokenizer, token_label

# -----------------------------------------------------------------------------
ckpt = "out/sft/ckpt.pt"
prompt = ""                 # prompts separated by |; empty: read them interactively
max_new_tokens = 600        # at most (a 6-digit x*b=c has ~580); a long prompt leaves less room in block_size
temperature = 0.0           # 0 is greedy
top_k = 0                   # 0: all tokens
top_p = 1.0
show_tokens = False         # print every token as text(id, p=probability); the calculator's as text(id, forced)
calculator = "exact"        # word problems: "exact" fills each <<a op b= with its result (gsm8k.calculator_fill);
                            # "" lets the model compute it. Arithmetic prompts open no annotation
merge_lora = True           # an adapter checkpoint (lora.py): fold the adapters into its base; False keeps them apart
device = "auto"
dtype = "auto"
seed = 1337
# -----------------------------------------------------------------------------


@torch.no_grad()
def stream(model, ids, max_new_tokens, temperature=0.0, top_k=0, top_p=1.0, stop_id=None, generator=None,
           autocast=nullcontext(), tracker=None, tool=None):
    """Yields (token id, probability) as each token is sampled. The prompt goes through the model once;
    after that each step feeds only the newest token, which attends to the keys and values of all the
    earlier ones kept in the KV cache. The probability is under the temperature-scaled distribution.
    A pos='coupled' model needs tracker, a places.PlaceTracker of the prompt: it gives each token's place.
    tool(0, generated ids) (generation.token_tool's form, for the one row) may return ids to write next instead
    of the model (a calculator's result): they go through the model like sampled ones, yielded with probability
    None."""
    dev = next(model.parameters()).device
    cache = KVCache(model.config.n_layer, len(ids) + max_new_tokens)
    x = torch.tensor([ids], device=dev)                          # (1, T)
    positions = attn_mask = None                                 # the prompt: plain causal attention from 0
    places = torch.tensor([tracker.prompt], device=dev) if tracker else None   # (1, T, 2)
    generated, forced = [], []
    for _ in range(max_new_tokens):
        with autocast:
            logits, _ = model(x, positions=positions, attn_mask=attn_mask, kv_cache=cache, places=places)
        if forced:
            next_id, prob = torch.tensor([forced.pop(0)], device=dev), None
        else:
            logits = logits[:, -1].float()                       # (1, vocab)
            next_id = sample_next(logits, temperature, top_k, top_p, generator)  # (1,)
            prob = (logits / (temperature or 1.0)).softmax(dim=-1)[0, next_id].item()
        yield next_id.item(), prob
        if next_id.item() == stop_id:
            return
        generated.append(next_id.item())
        if tool and prob is not None:
            forced = list(tool(0, generated) or ())
        # the new token sits at position cache.pos and may see every cached position and itself
        x = next_id[:, None]                                     # (1, 1)
        positions = torch.tensor([[cache.pos]], device=dev)      # (1, 1)
        attn_mask = torch.ones(1, 1, 1, cache.pos + 1, dtype=torch.bool, device=dev)  # (1, 1, 1, S)
        places = torch.tensor([[tracker.push(next_id.item())]], device=dev) if tracker else None   # (1, 1, 2)


def prompt_error(tok, text, block_size, words=False):
    """Why a prompt cannot be run (one line), or None. words: a word problem, any text framed as it trained."""
    if not text:
        return "empty prompt: type a problem such as 17+19=? or 72-x=34, x=? (quit or Ctrl-D to leave)"
    if words:
        text = gsm8k.prompt(text)
    bad = "" if words else "".join(sorted(set(re.sub(r"[0-9+\-*/=?,x .]", "", text))))
    if bad:
        return f"unexpected character(s) {bad!r}: prompts use digits, + - * / = ? , x and spaces, e.g. 17+19=?"
    n = len(tok.encode(text))
    if n >= block_size:
        return f"prompt of {n} tokens leaves no room to answer: block_size is {block_size}"
    return None


def complete_prompt(model, tok, text, rt, generator, box, words=False):
    """Say first when the prompt is not one of the task forms or lies outside the digit box the checkpoint
    trained on; print the prompt, then each token as it comes, then the verdict (or that there is none), and
    whether block_size cut the completion. words: a word problem, framed as the checkpoint trained on it."""
    problem = None if words else parse_prompt(text)
    note = None if words else not_a_task(text) if problem is None else outside_box(problem, box) if box else None
    if note:
        print(f"note: {note}" + ("" if problem is None else ": longer than training, a length-generalisation test"))
    text = gsm8k.prompt(text) if words else text
    ids = tok.encode(text)
    room = min(max_new_tokens, model.config.block_size - len(ids))
    print(text, end="", flush=True)
    generated = []
    tracker = PlaceTracker(tok, ids) if model.config.pos == "coupled" else None
    tool = token_tool(tok, gsm8k.calculator_fill) if calculator == "exact" else None
    for token_id, prob in stream(model, ids, room, temperature, top_k, top_p, tok.end_id, generator, rt.autocast,
                                 tracker, tool):
        generated.append(token_id)
        piece = tok.decode_tokens([token_id])[0]
        print(" " + token_label(piece, token_id, prob) if show_tokens else piece, end="", flush=True)
    print()
    if generated[-1] != tok.end_id and room < max_new_tokens:
        print(f"cut at block_size {model.config.block_size}: the prompt leaves room for {room} new tokens")
    completion = tok.decode(generated)
    if problem:
        verdict = "right" if is_correct(completion, problem.answer) else f"wrong, the answer is {problem.answer}"
        answer = extract_answer(completion)
        print(f"{'no answer' if answer is None else f'answer {answer}'}: {verdict}")
    elif words:
        answer = gsm8k.extract_answer(completion)
        print(f"{'no answer' if answer is None else f'answer {answer}'}: a word problem, not checked")
    else:
        print("not one of the task forms: not checked")


def interactive(model, tok, rt, generator, box, banner, words):
    """>>> prompts until quit or end of input; a bad prompt gets one line and the prompt again."""
    print(banner)
    while True:
        try:
            text = input(">>> ").strip() if words else normalize_prompt(input(">>> "))
        except EOFError:
            print()
            return
        if text == "quit":
            return
        error = prompt_error(tok, text, model.config.block_size, words)
        if error:
            print(error)
            continue
        complete_prompt(model, tok, text, rt, generator, box, words)


def main():
    configure(globals())
    if calculator not in ("exact", ""):
        raise SystemExit(f"config error: calculator must be 'exact' or '' (none), got {calculator!r}")
    rt = setup(device, dtype, seed)
    checkpoint = load_checkpoint(ckpt, rt.device)
    tok = get_tokenizer(checkpoint["tokenizer"])
    model = model_from_checkpoint(checkpoint, rt.device, merge_lora=merge_lora).eval()
    generator = torch.Generator(device=rt.device).manual_seed(seed)
    words = checkpoint.get("family", "arithmetic") != "arithmetic"
    prompts = [p.strip() if words else normalize_prompt(p) for p in prompt.split("|")] if prompt else []
    for p in prompts:
        error = prompt_error(tok, p, model.config.block_size, words)
        if error:
            raise SystemExit(f"--prompt {p!r}: {error}")
    try:
        for p in prompts:
            complete_prompt(model, tok, p, rt, generator, checkpoint.get("box"), words)
        if not prompts:
            example = "a word problem" if words else "a problem such as 17+19=? or 72-x=34, x=?"
            interactive(model, tok, rt, generator, checkpoint.get("box"), f"{ckpt} (iter {checkpoint.get('iter_num')}): "
                        f"type {example}; quit or Ctrl-D to leave", words)
    except KeyboardInterrupt:   # Ctrl-C leaves quietly, in the middle of an answer too
        print()


if __name__ == "__main__":
    main()
