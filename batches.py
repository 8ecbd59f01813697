"""
Training batches, shared by the stage scripts: windows of the pretraining stream that begin at a document,
prompt + completion rows scored on the completion only, GRPO's sampled rollouts, and the seeding that lets a
resumed run or a DDP run see exactly the batches of one uninterrupted process.
"""
import os

import numpy as np
import torch

from generation import encode_example
from places import completion_places, token_strings


def read_tokens(data_dir, split):
    """data_dir/<split>.bin, the uint16 token stream generate_pairs.py wrote, memory-mapped; split
    'train_places' or 'val_places' reads each token's (digit place, local position), (N, 2) (places.py)."""
    path = os.path.join(data_dir, f"{split}.bin")
    if not os.path.exists(path):
        raise SystemExit(f"{path} not found: run `python generate_pairs.py` for {data_dir} first")
    if os.path.getsize(path) == 0:
        raise SystemExit(f"{path} is empty: regenerate the data with generate_pairs.py")
    data = np.memmap(path, dtype=np.uint16, mode="r")
    return data.reshape(-1, 2) if split.endswith("_places") else data


def unused_token_ids(data_dir, vocab_size):
    """The ids that never occur in data_dir/train.bin, the training stream (SFT's rows are its documents):
    a BPE tokenizer learnt on more text than the model trains on has many (README: Word problems)."""
    counts = np.bincount(read_tokens(data_dir, "train"), minlength=vocab_size)[:vocab_size]
    return np.flatnonzero(counts == 0).tolist()


def document_starts(data, eot_id, block_size):
    """Offsets where a document (one worked problem) begins and a whole window still fits."""
    starts = np.concatenate([[0], np.flatnonzero(np.asarray(data) == eot_id) + 1])
    return starts[starts + block_size + 1 <= len(data)]


def get_batch(data, places, starts, batch_size, block_size, rng, device, operands=None):
    """Windows of block_size+1 tokens that begin at a document start: x, y (x shifted by one) and the
    (place, local position) of x (B, T, 2). A window that began mid-problem would spend its first tokens on
    an answer whose prompt it cannot see. With operands (operand_tokens), the targets that are a prompt's
    digits are -1 (prompt_operands)."""
    ix = rng.choice(starts, size=batch_size)
    xy = torch.from_numpy(np.stack([data[i:i + block_size + 1] for i in ix]).astype(np.int64))
    x_places = torch.from_numpy(np.stack([places[i:i + block_size] for i in ix]).astype(np.int64))
    y = xy[:, 1:] if operands is None else torch.where(prompt_operands(xy, *operands), -1, xy[:, 1:])
    return xy[:, :-1].to(device), y.to(device), x_places.to(device)


def operand_tokens(tok, data, family):
    """(eot_id, the id of '?', the ids of digit tokens) for prompt_operands, if data (a token stream of that
    family) is arithmetic with a '?' token ending every document's prompt; else None (word stories, or a
    tokenizer that merges '?' into its neighbours)."""
    ids = tok.encode("?")
    if (family != "arithmetic" or len(ids) != 1
            or np.count_nonzero(data == ids[0]) < np.count_nonzero(data == tok.eot_id)):
        return None
    digits = torch.tensor([i for i, s in enumerate(token_strings(tok)) if s.isdigit()])
    return tok.eot_id, ids[0], digits


def prompt_operands(xy, eot_id, question_id, digit_ids):
    """(B, T) bool: which targets of windows xy (B, T+1) that begin at a document are digits of a prompt: its
    operands, random numbers no model can predict. A document's prompt runs to its first '?' (as for its digit
    places: places.document_places); <|endoftext|> ends the document and starts the next prompt. The prompt's
    other tokens (operator, '=', 'x', '?') stay scored: they tell which task the document is (README:
    Pretraining)."""
    event = torch.where(xy == eot_id, 1, torch.where(xy == question_id, 2, 0))        # (B, T+1)
    at = torch.arange(xy.size(1)).expand_as(xy)
    last = torch.cummax(torch.where(event > 0, at, -1), dim=1).values               # last event at or before
    before = last[:, :-1]                                                           # (B, T): before target t+1
    in_answer = (before >= 0) & (event.gather(1, before.clamp(min=0)) == 2)        # a '?' came last
    return ~in_answer & torch.isin(xy[:, 1:], digit_ids)


def document_mask(x, eot_id):
    """(B, 1, T, T) bool: token t may attend to token s <= t of its own document (documents end with
    <|endoftext|>). A packed window holds several worked problems, and a model whose positions restart in
    every step (pos='coupled') could not tell the digits of one problem from those of the one before."""
    return segment_mask(torch.cumsum(x == eot_id, dim=1) - (x == eot_id).long())   # <|endoftext|> ends its own


def segment_mask(segment):
    """(B, 1, T, T) bool from segment ids (B, T): token t may attend to token s <= t of its own segment."""
    T = segment.size(1)
    causal = torch.ones(T, T, dtype=torch.bool, device=segment.device).tril()
    return (causal & (segment[:, :, None] == segment[:, None, :])).unsqueeze(1)


def batch_rng(seed, iter_num, micro_batch):
    """Batches depend only on (seed, iteration, global micro-batch index): a resumed run sees exactly the
    batches it would have seen, and 2 DDP ranks x 1 micro-step see the batches of 1 process x 2 micro-steps."""
    return np.random.default_rng([seed, iter_num, micro_batch])


def pack_rows(encoded):
    """generation.encode_example tuples (ids, completion mask, places) packed, first fit in order, into rows as
    long as the longest of them. Returns idx (R, T), completion_mask (R, T), places (R, T, 2), positions (R, T)
    (each example's own 0, 1, ..., as if alone in its row: what generation gives it) and segment (R, T): the
    index in encoded of the example each token belongs to, -1 on padding (a segment of its own), for
    segment_mask. A worked 3x3-digit product is ten times an addition's length: one example a row would make
    a batch of the small data mostly padding."""
    T = max(len(ids) for ids, _, _ in encoded)
    rows, room = [], []                    # the examples of each row, and the tokens it has left
    for j, (ids, _, _) in enumerate(encoded):
        r = next((r for r, left in enumerate(room) if len(ids) <= left), len(rows))
        if r == len(rows):
            rows.append([])
            room.append(T)
        rows[r].append(j)
        room[r] -= len(ids)
    idx = torch.zeros(len(rows), T, dtype=torch.long)
    completion_mask = torch.zeros(len(rows), T, dtype=torch.bool)
    places = torch.zeros(len(rows), T, 2, dtype=torch.long)
    positions = torch.zeros(len(rows), T, dtype=torch.long)
    segment = torch.full((len(rows), T), -1)
    for r, members in enumerate(rows):
        start = 0
        for j in members:
            ids, mask, pl = encoded[j]
            end = start + len(ids)
            idx[r, start:end], completion_mask[r, start:end] = torch.tensor(ids), torch.tensor(mask)
            places[r, start:end], segment[r, start:end] = torch.tensor(pl), j
            positions[r, start:end] = torch.arange(len(ids))
            start = end
    return idx, completion_mask, places, positions, segment


def sft_batch(examples, ix, tok, block_size, device):
    """The examples ix as x (R, T) inputs, y (R, T) targets where only completion tokens are scored (-1
    elsewhere), and where: the keyword arguments that place each token for model(x, y, **where), its position
    and digit place (as if alone) and the attention mask that keeps each example to itself. Pretraining's loss
    with a mask. Target t is token t+1, so the mask is shifted with it: the first completion token is predicted
    from the last prompt token, and the prompt's own tokens are never targets. The examples are packed
    (pack_rows): half the token slots of one example a row on the small data."""
    idx, completion_mask, places, positions, segment = pack_rows(
        [encode_example(tok, examples[i]["prompt"], examples[i]["completion"], block_size) for i in ix])
    # a target that crosses into the next example is its first prompt token: unscored, like the prompt's own
    targets = torch.where(completion_mask[:, 1:], idx[:, 1:], -1)        # (R, T-1)
    where = dict(positions=positions[:, :-1].to(device), places=places[:, :-1].to(device),
                 attn_mask=segment_mask(segment[:, :-1].to(device)))      # (R, T), (R, T, 2), (R, 1, T, T)
    return idx[:, :-1].to(device), targets.to(device), where


def rollout_batch(rows, tok, device, scored=None):
    """GRPO's sampled rows ({prompts, completions, sample_logps}: token ids and their log-probs) packed into
    rows (pack_rows, longest first) for the update's forward passes: a group's completions run from 20 tokens
    (a 1-digit sum) to 300 and more (past the box), and one rollout a row, right-padded to the longest, made the batch
    mostly padding (README: GRPO). Every token keeps the position, digit place and context (the attention
    mask keeps each rollout to itself) it had when it was sampled. Built from the token ids, not from text as
    generation.encode_completions does: a sampled token sequence need not survive decode + encode.
    scored (one bool a rollout; default all): the rollouts the loss sees; the others (truncated ones, masked
    out) are left out of the rows. Returns
    - idx (R, T) and where, model(idx, **where)'s keyword arguments: positions, places, attn_mask;
    - per rollout b and completion token j, (B, M) with M the longest completion: token_index, where
      token_logprobs(logits, idx).flatten() scores that token, completion_mask and sample_logps."""
    prompts, completions = rows["prompts"], rows["completions"]
    B, M = len(prompts), max(len(c) for c in completions)
    packed = [b for b in range(B) if scored is None or scored[b]] or list(range(B))   # none scored: a zero loss
    packed.sort(key=lambda b: -(len(prompts[b]) + len(completions[b])))
    idx, _, places, positions, segment = pack_rows(
        [(prompts[b] + completions[b], [False] * len(prompts[b]) + [True] * len(completions[b]),
          completion_places(tok, prompts[b], completions[b])) for b in packed])
    T = idx.size(1)
    # where each packed rollout starts: its first token has position 0 (padding is segment -1)
    starts = ((positions == 0) & (segment >= 0)).nonzero()                       # (len(packed), 2): row, column
    token_index = torch.zeros(B, M, dtype=torch.long)
    completion_mask = torch.zeros(B, M, dtype=torch.bool)
    sample_logps = torch.zeros(B, M)
    for r, t in starts.tolist():
        b = packed[int(segment[r, t])]
        n, m = len(prompts[b]), len(completions[b])
        # completion token j sits at column t + n + j and is scored by logits column t + n + j - 1
        token_index[b, :m] = r * (T - 1) + t + n - 1 + torch.arange(m)
        completion_mask[b, :m] = scored is None or bool(scored[b])
    for b, logps in enumerate(rows["sample_logps"]):
        sample_logps[b, :len(completions[b])] = torch.as_tensor(logps, dtype=torch.float)
    where = dict(positions=positions.to(device), places=places.to(device), attn_mask=segment_mask(segment).to(device))
    return idx.to(device), where, token_index.to(device), completion_mask.to(device), sample_logps.to(device)
