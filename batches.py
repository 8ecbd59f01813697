"""
Training batches, shared by the stage scripts: windows of the pretraining stream that begin at a document,
prompt + completion rows scored on the completion only, and the seeding that lets a resumed run or a DDP
run see exactly the batches of one uninterrupted process.
"""
import os

import numpy as np
import torch

from common import encode_completions


def read_tokens(data_dir, split):
    """data_dir/<split>.bin, the uint16 token stream generate_pairs.py wrote, memory-mapped."""
    path = os.path.join(data_dir, f"{split}.bin")
    if not os.path.exists(path):
        raise SystemExit(f"{path} not found: run `python generate_pairs.py` for {data_dir} first")
    if os.path.getsize(path) == 0:
        raise SystemExit(f"{path} is empty: regenerate the data with generate_pairs.py")
    return np.memmap(path, dtype=np.uint16, mode="r")


def document_starts(data, eot_id, block_size):
    """Offsets where a document (one worked problem) begins and a whole window still fits."""
    starts = np.concatenate([[0], np.flatnonzero(np.asarray(data) == eot_id) + 1])
    return starts[starts + block_size + 1 <= len(data)]


def get_batch(data, starts, batch_size, block_size, rng, device):
    """Windows of block_size+1 tokens that begin at a document start; y is x shifted by one. A window
    that began mid-problem would spend its first tokens on an answer whose prompt it cannot see."""
    ix = rng.choice(starts, size=batch_size)
    xy = torch.from_numpy(np.stack([data[i:i + block_size + 1] for i in ix]).astype(np.int64))
    return xy[:, :-1].to(device), xy[:, 1:].to(device)


def batch_rng(seed, iter_num, micro_batch):
    """Batches depend only on (seed, iteration, global micro-batch index): a resumed run sees exactly the
    batches it would have seen, and 2 DDP ranks x 1 micro-step see the batches of 1 process x 2 micro-steps."""
    return np.random.default_rng([seed, iter_num, micro_batch])


def sft_batch(examples, ix, tok, block_size, device):
    """x (B, T) inputs and y (B, T) targets where only completion tokens are scored (-1 elsewhere), for
    model(x, y): pretraining's loss with a mask. Target t is token t+1, so the mask is shifted with it: the
    first completion token is predicted from the last prompt token, and the prompt's own tokens are never
    targets."""
    idx, completion_mask = encode_completions(tok, [examples[i]["prompt"] for i in ix],
                                              [examples[i]["completion"] for i in ix], block_size)
    targets = torch.where(completion_mask[:, 1:], idx[:, 1:], -1)  # (B, T-1)
    return idx[:, :-1].to(device), targets.to(device)
