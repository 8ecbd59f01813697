"""
Train a BPE tokenizer for word problems: learn merges in Python here, run them in tiktoken (as nanochat does).

$ python train_tokenizer.py                        # GSM8K's train split -> data/tokenizers/words.json
$ python train_tokenizer.py --n_stories=20000      # and 20k synthetic stories (words.py): worse, README
$ python train_tokenizer.py --vocab_size=4096 --out=data/tokenizers/words4k.json

then use it anywhere a tokenizer is named: `--tokenizer=bpe:data/tokenizers/words.json`.

The text is first split into chunks by PATTERN (GPT-4's split with one change: every number character is
a chunk of its own), and merges never cross a chunk boundary, so no token holds a digit: numbers stay one
token per digit, as in the `math` tokenizer, while words and the solution's punctuation get merged.

The trainer keeps every distinct chunk encoded exactly as tiktoken would encode it with the merges so far
(`encode_chunk`), so the pair counts it maximises are counts of tiktoken's own tokens and running the file
in tiktoken gives the tokens training saw. Each merge re-encodes only the chunks that hold the merged pair.
"""
import heapq
import json
import os
import time
from collections import Counter, defaultdict

import regex  # tiktoken's own dependency: \p{L} and possessive quantifiers, as tiktoken's Rust regex has
from tqdm import tqdm

import gsm8k
import words
from configurator import configure
from tokenizer import SPECIALS, Tokenizer, bpe_encoding, bytes_per_token, get_tokenizer

# GPT-4's split (contractions, words with one leading space or symbol, punctuation runs, newlines, spaces)
# with \p{N}{1,2} turned into \p{N}: each number character alone, so no merge can hold a digit
PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]"""
           r"""|\s+(?!\S)|\s+""")

# -----------------------------------------------------------------------------
# default config
out = 'data/tokenizers/words.json'   # data/ is git-ignored: the file is an artifact, seconds to rebuild
vocab_size = 2048                    # every id: the 256 bytes + the merged tokens + the 4 special tokens
gsm8k_file = 'vendor/gsm8k/train.jsonl'
n_stories = 0                        # synthetic stories (words.py) added to GSM8K: with 20,000, every training
                                     # object became one token and the test's unseen ones 1-4 tokens, which the
                                     # model misread (README: Word problems, The tokenizer)
seed = 1337                          # of the stories
eval_file = 'vendor/gsm8k/test.jsonl'  # the bytes-per-token table is measured on these problems
overwrite = False
# -----------------------------------------------------------------------------


def gsm8k_texts(path):
    """Question and worked answer of each GSM8K row of a jsonl file, as one text."""
    return [f"{r.question}\n{r.solution}" for r in gsm8k.load_file(path)]


def chunk_counts(texts, pattern=PATTERN):
    """{chunk (bytes): how often it occurs}: BPE learns within chunks, so only distinct ones matter."""
    return Counter(chunk.encode() for text in texts for chunk in regex.findall(pattern, text))


def bpe(parts, ranks):
    """tiktoken's merge rule: while two neighbours join into a token, join the lowest-ranked pair (leftmost on ties)."""
    parts = list(parts)
    while len(parts) > 1:
        joined = [ranks.get(a + b, len(ranks)) for a, b in zip(parts, parts[1:])]
        best = min(range(len(joined)), key=joined.__getitem__)
        if joined[best] == len(ranks):
            break
        parts[best:best + 2] = [parts[best] + parts[best + 1]]
    return parts


def encode_chunk(chunk, ranks, parts=None):
    """tiktoken's tokens (bytes) for one chunk; it returns a chunk that is a token as that token without merging.
    Continuing from `parts`, its encoding before the newest token, gives the same result: the newest token has
    the highest rank, so it is merged only where no older one can be."""
    if chunk in ranks:
        return [chunk]
    return bpe([bytes([b]) for b in chunk] if parts is None else parts, ranks)


def train_bpe(counts, n_merges, progress=False):
    """The merged tokens (bytes) in rank order, and each chunk's final tokens ({chunk: [bytes]}).
    A candidate is the bytes of two neighbouring tokens joined; its count is over every chunk occurrence.
    pair_count and where are updated only for the chunks a merge changes; a heap finds the best candidate
    (highest count, then the smallest bytes: deterministic), skipping entries whose count has since changed."""
    chunks = list(counts)
    index = {chunk: i for i, chunk in enumerate(chunks)}
    parts = [[bytes([b]) for b in chunk] for chunk in chunks]
    pair_count = defaultdict(int)    # joined bytes -> occurrences
    where = defaultdict(set)         # joined bytes -> ids of the chunks holding it

    changed = set()                  # the joined bytes whose count the current merge touched

    def tally(i, sign):
        for a, b in zip(parts[i], parts[i][1:]):
            pair_count[a + b] += sign * counts[chunks[i]]
            (where[a + b].add if sign > 0 else where[a + b].discard)(i)
            changed.add(a + b)

    for i in range(len(chunks)):
        tally(i, +1)
    heap = [(-c, pair) for pair, c in pair_count.items()]
    heapq.heapify(heap)
    ranks = {bytes([b]): b for b in range(256)}
    merged = []
    bar = tqdm(total=n_merges, desc="merges", disable=not progress)
    while len(merged) < n_merges and heap:
        count, pair = heapq.heappop(heap)
        if pair_count.get(pair) != -count:
            continue  # stale: this pair's count changed after the entry was pushed
        ranks[pair] = len(ranks)
        merged.append(pair)
        # a chunk that now is a token becomes that one token (encode_chunk), even without the pair inside it
        affected = where.pop(pair) | ({index[pair]} if pair in index else set())
        changed.clear()
        for i in affected:
            tally(i, -1)
            parts[i] = encode_chunk(chunks[i], ranks, parts[i])
            tally(i, +1)
        for p in changed:
            if pair_count[p] > 0:
                heapq.heappush(heap, (-pair_count[p], p))
            else:
                del pair_count[p]
                where.pop(p, None)
        bar.update()
    bar.close()
    return merged, dict(zip(chunks, parts))


def main():
    configure(globals())
    n_merges = vocab_size - 256 - len(SPECIALS)
    if n_merges < 0 or vocab_size > 2 ** 16:
        raise SystemExit(f"config error: vocab_size must be in [{256 + len(SPECIALS)}, 65536] (data is uint16), "
                         f"got {vocab_size}")
    if n_stories < 0:
        raise SystemExit(f"config error: n_stories must be >= 0, got {n_stories}")
    if os.path.exists(out) and not overwrite:
        raise SystemExit(f"{out} exists: pass --overwrite=True to replace it, or another --out")
    texts = gsm8k_texts(gsm8k_file)
    n_gsm8k = len(texts)
    texts += words.training_texts(n_stories, seed)
    t0 = time.time()
    counts = chunk_counts(texts)
    print(f"{n_gsm8k} GSM8K problems + {n_stories} stories: {sum(len(c) * n for c, n in counts.items()):,} bytes, "
          f"{len(counts):,} distinct chunks")
    merged, _ = train_bpe(counts, n_merges, progress=True)
    print(f"learned {len(merged)} merges in {time.time() - t0:.1f}s"
          + (f" (no pairs left: vocab_size {256 + len(merged) + len(SPECIALS)})" if len(merged) < n_merges else ""))
    spec = {"pattern": PATTERN, "vocab_size": 256 + len(merged) + len(SPECIALS),
            "trained_on": {"gsm8k_file": gsm8k_file, "gsm8k_problems": n_gsm8k, "stories": n_stories, "seed": seed},
            "merged": [token.hex() for token in merged]}  # token 256 + i, as hex bytes (a token may split a character)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out + ".tmp", "w") as f:   # then renamed: a run killed midway leaves no half-written tokenizer
        json.dump(spec, f, indent=1)
    os.replace(out + ".tmp", out)
    print(f"wrote {out}")
    name = f"bpe:{out}"
    print_compression(Tokenizer(name, *bpe_encoding(name, PATTERN, merged)), eval_file)


def print_compression(tok, path):
    """Bytes per token of tok, `math` and `gpt2` (when tiktoken has its ranks) on the GSM8K problems in path."""
    texts = gsm8k_texts(path)
    print(f"bytes per token on {path} ({len(texts)} problems):")
    print(f"  {tok.name}: {bytes_per_token(tok, texts):.2f}")
    print(f"  math: {bytes_per_token(get_tokenizer('math'), texts):.2f}")
    try:
        print(f"  gpt2: {bytes_per_token(get_tokenizer('gpt2'), texts):.2f}")
    except SystemExit:  # get_tokenizer's one-line error: tiktoken could not download the GPT-2 ranks
        print("  gpt2: unavailable offline")


if __name__ == "__main__":
    main()
