"""
Generation: the KV-cache engine (generate: batched sampling from token-list prompts, with finished rows
dropped from the batch), and on top of it the text side: prompt + completion rows (with each token's digit
place) that SFT, DPO and GRPO share, completions of text prompts, and greedy accuracy checked by
tasks.is_correct (SFT, DPO, GRPO and eval.py share it).
"""
from dataclasses import dataclass
from functools import cache

import torch

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
             generator=None, tools=None, limits=None):
    """Completions of text prompts with the KV-cache engine, in batches. Returns the decoded completions
    (ending with <|end|> when the model stopped) and the per-batch Generation objects. tools(completion so
    far) -> text to force, or None, is asked after every token with '=' in it: where a calculator annotation
    such as <<48/2= asks for its result (gsm8k.calculator_fill). limits: each prompt's own max_new_tokens
    (generate's)."""
    model.eval()
    fill_ids, tool_ids = (token_tool(tok, tools), ids_containing(tok, "=")) if tools else (None, None)
    texts, generations = [], []
    for i in range(0, len(prompts), batch_size):
        batch = [tok.encode(p) for p in prompts[i:i + batch_size]]
        with rt.autocast:
            gen = generate(model, batch, max_new_tokens, temperature, top_k, top_p, stop_ids=(tok.end_id,),
                           generator=generator, trackers=place_trackers(model, tok, batch), tools=fill_ids,
                           tool_ids=tool_ids, limits=None if limits is None else limits[i:i + batch_size])
        texts += [tok.decode(ids) for ids in gen.token_lists()]
        generations.append(gen)
    return texts, generations


def token_tool(tok, tool):
    """generate's tools= for a tool on text: it decodes the row's ids and encodes the text to force."""
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


# -----------------------------------------------------------------------------
# the engine

class KVCache:
    """Keys and values of every layer for a batch whose rows all sit at the same position
    (prompts are left-padded to one length), so one integer `pos` says where to write next.
    The buffers grow `block` columns at a time and attention reads a layer's buffer whole, the columns not
    written yet masked out: a slice of a longer buffer is a strided tensor, which a CPU matmul first copies
    (a decoding step's attention 3-5x slower; README: Benchmarks)."""

    def __init__(self, n_layer, max_len, block=32):
        self.n_layer, self.max_len, self.block = n_layer, max_len, block
        self.k = self.v = None
        self.pos = 0

    def update(self, layer, k, v):
        """Write k, v (B, n_kv_head, T, head_dim) at pos; returns the layer's keys and values (B, n_kv_head, W,
        head_dim), W >= pos + T, where the columns from pos + T on are zeros (finite: a masked column's zero
        weight times them is zero)."""
        B, H, T, hd = k.shape
        end = self.pos + T
        if self.k is None:   # allocate on first use, in the dtype autocast produced
            self.k, self.v = k.new_zeros(self.n_layer, B, H, 0, hd), v.new_zeros(self.n_layer, B, H, 0, hd)
        if end > self.k.size(3):   # grow by whole blocks
            self._rebuild(slice(None), min(self.max_len, -(-end // self.block) * self.block))
        self.k[layer, :, :, self.pos:end] = k
        self.v[layer, :, :, self.pos:end] = v
        return self.k[layer], self.v[layer]

    def keep(self, rows):
        """Keep only the batch rows where rows (B,) is True."""
        self._rebuild(rows, self.k.size(3))

    def _rebuild(self, rows, width):
        """Zero buffers of width columns holding the columns written so far of the batch rows `rows`: only
        those are copied (a batch compacts while much of its cache is still empty)."""
        k, v = self.k[:, rows, :, :self.pos], self.v[:, rows, :, :self.pos]
        self.k, self.v = (x.new_zeros(*x.shape[:3], width, x.size(4)) for x in (k, v))
        self.k[:, :, :, :self.pos], self.v[:, :, :, :self.pos] = k, v


@dataclass
class Generation:
    tokens: torch.Tensor     # (B, N) generated ids; after the stop token a row holds pad_id
    logprobs: torch.Tensor   # (B, N) log-prob of each generated token at the sampling temperature
    mask: torch.Tensor       # (B, N) True for real tokens, the stop token included
    stopped: torch.Tensor    # (B,) True if the row ended with a stop token, False if it hit max_new_tokens
    forced: torch.Tensor     # (B, N) True where a tool forced the token (generate's tools=), not the model

    def token_lists(self):
        return [row[m].tolist() for row, m in zip(self.tokens, self.mask)]


def left_pad(prompts, pad_id, device):
    """Left-pad token lists to one length so every row's next token lands in the same column."""
    T = max(len(p) for p in prompts)
    idx = torch.full((len(prompts), T), pad_id, dtype=torch.long)
    valid = torch.zeros((len(prompts), T), dtype=torch.bool)
    for i, p in enumerate(prompts):
        idx[i, T - len(p):] = torch.tensor(p, dtype=torch.long)
        valid[i, T - len(p):] = True
    return idx.to(device), valid.to(device)


def sample_next(logits, temperature, top_k, top_p, generator):
    """logits (B, vocab) -> next ids (B,). temperature 0 is greedy."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # drop a token when the tokens ranked above it already cover top_p (the first always stays)
        drop_sorted = probs.cumsum(dim=-1) - probs > top_p
        logits = logits.masked_fill(drop_sorted.scatter(1, order, drop_sorted), float("-inf"))
    probs = logits.softmax(dim=-1)                                               # (B, vocab)
    if probs.device.type != "cpu":
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)
    # on a CPU, inverse-CDF sampling: the first token whose cumulative probability passes a uniform draw. The
    # same distribution as torch.multinomial, which is 15-20x slower there at a rollout's batch (a tenth of a
    # decoding step). A token of probability 0 is never drawn: the CPU's cumsum is sequential, so its sum
    # equals the one before it exactly (a GPU's parallel scan need not; GPUs keep multinomial, fast there).
    cdf = probs.cumsum(dim=-1)
    u = torch.rand(cdf.size(0), 1, generator=generator)                         # (B, 1), in [0, 1)
    # u * total rounds below total, so the clamp is a guard, not a case
    return torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(1).clamp(max=cdf.size(1) - 1)


@torch.no_grad()
def generate(model, prompts, max_new_tokens, temperature=0.0, top_k=0, top_p=1.0, stop_ids=(),
             pad_id=0, generator=None, use_cache=True, trackers=None, compact=True, tools=None, tool_ids=None,
             limits=None):
    """Batched sampling from token-list prompts of different lengths. Prompts are left-padded; pad
    positions are masked out of attention and real tokens get positions 0, 1, ... as if unpadded, so a
    row's output does not depend on its neighbours. With use_cache the prefix is run once and each step
    feeds one token per row; without, the whole sequence is recomputed every step (the reference the
    cache is tested against). pos='coupled' needs trackers: a places.PlaceTracker per prompt, which gives
    the prompt's (place, local position) pairs and the pair of each token as it is sampled.
    With compact, rows that stopped leave the batch (and the KV cache) once a quarter of it has stopped: a
    batch of rollouts ends when its longest row does, and decoding the finished rows until then is waste
    (bench.py measures both).
    tools(row, ids) lets a tool write part of the output (gsm8k.py's calculator): after a running row samples
    one of tool_ids (any token when None) it gets the row's prompt index and generated ids, and returns the
    ids to force, or None. Forced ids replace the row's samples on the next steps, one a step, so every row
    still advances one token a step and the KV cache and padding work as without tools; stop_ids are never
    forced (a tool cannot end the answer). Generation.forced marks them, so that a loss can leave them out.
    limits, one per prompt and none above max_new_tokens, gives each row its own max_new_tokens: a row that
    reaches its limit ends as one that reaches max_new_tokens does (not stopped), and leaves the batch."""
    device = next(model.parameters()).device
    coupled = model.config.pos == "coupled"
    if coupled and (trackers is None or len(trackers) != len(prompts)):
        raise SystemExit("pos='coupled' generates with one places.PlaceTracker per prompt (trackers=)")
    idx, prompt_valid = left_pad(prompts, pad_id, device)   # (B, P)
    B, P = idx.shape
    if P + max_new_tokens > model.config.block_size:
        raise SystemExit(f"a prompt of {P} tokens plus max_new_tokens={max_new_tokens} exceeds "
                         f"block_size {model.config.block_size}")
    positions = (prompt_valid.cumsum(dim=1) - 1).clamp(min=0)  # (B, P)
    # (B, P + max_new_tokens): which columns are real tokens; every generated one is (a stopped row's too)
    valid = torch.cat([prompt_valid, torch.ones(B, max_new_tokens, dtype=torch.bool, device=device)], dim=1)
    places = None
    if coupled:   # (B, P, 2): the prompts' (place, local position), left-padded like idx
        places = torch.zeros(B, P, 2, dtype=torch.long)
        for i, t in enumerate(trackers):
            places[i, P - len(t.prompt):] = torch.tensor(t.prompt, dtype=torch.long)
        places = places.to(device)
    stop = torch.tensor(list(stop_ids) or [-1], device=device)
    if limits is not None and (len(limits) != B or not all(1 <= n <= max_new_tokens for n in limits)):
        raise SystemExit(f"generate: limits= needs one limit per prompt ({B}), each in 1..max_new_tokens "
                         f"({max_new_tokens})")
    limit = torch.tensor(limits if limits is not None else [max_new_tokens] * B, device=device)   # (B,)
    cache = KVCache(model.config.n_layer, P + max_new_tokens) if use_cache else None
    tokens = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros(B, max_new_tokens, device=device)
    stopped = torch.zeros(B, dtype=torch.bool, device=device)
    rows = torch.arange(B, device=device)            # the original row of each row in the batch
    running = torch.ones(B, dtype=torch.bool, device=device)
    n_new = torch.zeros(B, dtype=torch.long, device=device)
    forced = torch.zeros(B, max_new_tokens, dtype=torch.bool, device=device)
    queue = {}                                       # original row -> the ids a tool still forces on it
    if tool_ids is not None:
        tool_ids = torch.tensor(list(tool_ids), dtype=torch.long, device=device)
    step_idx, step_pos, step_places = idx, positions, places
    for t in range(max_new_tokens):
        S = P + t  # tokens so far
        Tq = step_idx.size(1)
        if Tq == 1:   # a cached step: the one new token may see every valid column, itself included
            attn_mask = valid[:, None, None, :S]                             # (b, 1, 1, S)
        else:         # query i (at column S - Tq + i) may see valid keys at columns <= its own, and always itself
            cols = torch.arange(S, device=device)
            q_cols = torch.arange(S - Tq, S, device=device)
            causal = cols[None, :] <= q_cols[:, None]                        # (Tq, S)
            attn_mask = ((causal[None] & valid[:, None, :S]) | (cols[None, None, :] == q_cols[None, :, None]))[:, None]
        logits, _ = model(step_idx, positions=step_pos, attn_mask=attn_mask, kv_cache=cache, places=step_places)
        logits = logits[:, -1].float()                                   # (b, vocab)
        next_id = sample_next(logits, temperature, top_k, top_p, generator)
        forced_rows = force_queued(next_id, rows, queue) if queue else []
        if forced_rows:
            forced[forced_rows, t] = True
        logp = (logits / (temperature or 1.0)).log_softmax(-1).gather(1, next_id[:, None]).squeeze(1)
        live = rows[running]
        tokens[live, t] = next_id[running]
        logprobs[live, t] = logp[running]
        n_new[live] += 1
        finished = running & torch.isin(next_id, stop)
        stopped[rows[finished]] = True
        running &= ~finished
        if tools is not None:   # ask the tool after a sampled (not forced) token that may call it
            asks = running if tool_ids is None else running & torch.isin(next_id, tool_ids)
            for r in [r for r in rows[asks].tolist() if r not in forced_rows]:
                fill = [i for i in tools(r, tokens[r, :int(n_new[r])].tolist()) or () if i not in stop_ids]
                if fill:
                    queue[r] = fill
        running &= n_new[rows] < limit[rows]                             # a row at its limit ends there
        next_pos = step_pos[:, -1:] + 1
        if coupled:
            ids = next_id.tolist()
            next_places = torch.tensor([[trackers[r].push(ids[i]) if on else (0, 0)] for i, (r, on)
                                        in enumerate(zip(rows.tolist(), running.tolist()))], device=device)  # (b, 1, 2)
        if use_cache:
            step_idx, step_pos = next_id[:, None], next_pos
            step_places = next_places if coupled else None
        else:
            step_idx = torch.cat([step_idx, next_id[:, None]], dim=1)
            step_pos = torch.cat([step_pos, next_pos], dim=1)
            step_places = torch.cat([step_places, next_places], dim=1) if coupled else None
        if not bool(running.any()):
            break
        if compact and 4 * int(running.sum()) <= 3 * len(rows):          # drop the stopped rows
            keep = running
            rows, running, valid = rows[keep], running[keep], valid[keep]
            step_idx, step_pos = step_idx[keep], step_pos[keep]
            step_places = step_places[keep] if coupled else None
            if cache is not None:
                cache.keep(keep)
    N = int(n_new.max()) if B else 0
    mask = torch.arange(N, device=device)[None, :] < n_new[:, None]    # (B, N)
    return Generation(tokens=tokens[:, :N], logprobs=logprobs[:, :N], mask=mask, stopped=stopped,
                      forced=forced[:, :N])


def force_queued(next_id, rows, queue):
    """Put the first id a tool queued for a row in place of its sample in next_id (b,), for every row with
    one; returns the original rows forced. queue maps an original row to its ids still to force and is
    emptied as they are used."""
    forced_rows = []
    for i, r in enumerate(rows.tolist()):
        if r in queue:
            next_id[i] = queue[r].pop(0)
            forced_rows.append(r)
            if not queue[r]:
                del queue[r]
    return forced_rows
