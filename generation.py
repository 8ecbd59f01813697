"""
Prompt + completion batches, and batched generation as text: the right-padded training rows (with each
token's digit place) that SFT, DPO and GRPO share, completions of text prompts with the KV-cache engine,
and greedy accuracy checked by tasks.is_correct (SFT, DPO, GRPO and eval.py share it).
"""
from functools import cache

import torch

from model import generate
from places import PlaceTracker, completion_places
from tasks import is_correct



def encode_example(tok, prompt, completion, block_size):
    """One prompt + completion as token ids, the completion mask (the <|end|> token included; the prompt
    excluded) and every token's (digit place, local position) (places.py), lists of one length.
    An example longer than block_size is an error: silently cutting it would train on a different answer."""
    p, c = tok.encode(prompt), tok.encode(completion)
    if len(p) + len(c) > block_size:
        raise SystemExit(f"example of {len(p) + len(c)} tokens is longer than block_size {block_size}: {prompt!r}")
    return p + c, [False] * len(p) + [True] * len(c), completion_places(tok, p, c)


def encode_completions(tok, prompts, completions, block_size, pad_id=0):
    """Right-padded batch of encode_example rows, which pos='coupled' models read the places of and the others
    ignore. Returns idx (B, T), completion_mask (B, T) and places (B, T, 2; 0 on padding)."""
    rows, masks, places = zip(*(encode_example(tok, p, c, block_size) for p, c in zip(prompts, completions)))
    return pad_rows(rows, pad_id), pad_rows(masks, False).bool(), pad_rows(places, 0)


def pad_rows(rows, pad):
    """Lists of different lengths (of ints, or of (place, local position) pairs) -> one right-padded long
    tensor, (B, T) or (B, T, 2)."""
    first = next(x for r in rows for x in r)
    out = torch.full((len(rows), max(len(r) for r in rows), *torch.tensor(first).shape), int(pad), dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def check_prompt(tok, prompt, block_size):
    n = len(tok.encode(prompt))
    if n >= block_size:
        raise SystemExit(f"prompt {prompt!r} has {n} tokens; block_size is {block_size}")


@torch.no_grad()
def complete(model, tok, prompts, rt, max_new_tokens, batch_size=500, temperature=0.0, top_k=0, top_p=1.0,
             generator=None, tools=None):
    """Completions of text prompts with the KV-cache engine, in batches. Returns the decoded completions
    (ending with <|end|> when the model stopped) and the per-batch Generation objects. tools(completion so
    far) -> text to force, or None, is asked after every token with '=' in it: where a calculator annotation
    such as <<48/2= asks for its result (gsm8k.calculator_fill)."""
    model.eval()
    fill_ids, tool_ids = (token_tool(tok, tools), ids_containing(tok, "=")) if tools else (None, None)
    texts, generations = [], []
    for i in range(0, len(prompts), batch_size):
        batch = [tok.encode(p) for p in prompts[i:i + batch_size]]
        with rt.autocast:
            gen = generate(model, batch, max_new_tokens, temperature, top_k, top_p, stop_ids=(tok.end_id,),
                           generator=generator, trackers=place_trackers(model, tok, batch), tools=fill_ids,
                           tool_ids=tool_ids)
        texts += [tok.decode(ids) for ids in gen.token_lists()]
        generations.append(gen)
    return texts, generations


def token_tool(tok, tool):
    """model.generate's tools= for a tool on text: it decodes the row's ids and encodes the text to force."""
    def fill(row, ids):
        text = tool(tok.decode(ids))
        return None if text is None else tok.encode(text)
    return fill


@cache
def ids_containing(tok, text):
    """The ids of the tokens whose text contains text (once per tokenizer: the gpt2 one has 50,260 tokens)."""
    return tuple(i for i, s in enumerate(tok.decode_tokens(range(tok.vocab_size))) if text in s)


def place_trackers(model, tok, prompts):
    """One places.PlaceTracker per token-list prompt for a pos='coupled' model, else None."""
    return [PlaceTracker(tok, p) for p in prompts] if model.config.pos == "coupled" else None


def greedy_correct(model, tok, problems, rt, max_new_tokens, batch_size=500):
    """[is the greedy answer right?] per problem, checked by tasks.is_correct (the same check eval.py and
    the GRPO reward use)."""
    texts, _ = complete(model, tok, [p.prompt for p in problems], rt, max_new_tokens, batch_size)
    return [is_correct(text, problem.answer) for problem, text in zip(problems, texts)]


def greedy_accuracy(model, tok, problems, rt, max_new_tokens, batch_size=500):
    """Greedy exact-match accuracy per task type and overall."""
    by_type = {}
    for problem, right in zip(problems, greedy_correct(model, tok, problems, rt, max_new_tokens, batch_size)):
        by_type.setdefault(problem.type, []).append(right)
    acc = {t: sum(v) / len(v) for t, v in sorted(by_type.items())}
    acc["overall"] = sum(sum(v) for v in by_type.values()) / len(problems)
    return acc
