"""
Tokenizers for nanomath, all built on tiktoken.

`math` (the default) is defined here, so nothing is downloaded: the 256 single
bytes are the base vocabulary and there are no merges, so every digit is its own
token (multi-digit tokens make arithmetic much harder for a small model: the
model would have to learn the digits inside "345" from an opaque id). Four
special tokens frame the canonical format used by every stage:

    17+25=?<think>7+5+0=12+0=12,1+2+1=3+1=4</think>42<|end|>
    ^prompt ^worked solution                 ^answer ^end of answer

and documents in the pretraining stream are separated by <|endoftext|>.

`gpt2` is tiktoken's GPT-2 BPE (needed to fine-tune GPT-2 weights). tiktoken
downloads its ranks once and caches them; offline, it fails with a clear error.

`bpe:<path>` is a BPE trained by train_tokenizer.py for word problems and saved
in the JSON file at path: the 256 bytes (ids 0-255, as in `math`), then its
merged tokens in the order learned, then the four special tokens. Its split
pattern puts every digit in a chunk of its own, so digits stay single tokens
while words merge. The name, path included, is what checkpoints and data record.
"""
import json

import tiktoken

EOT = "<|endoftext|>"      # separates documents in the pretraining stream
THINK = "<think>"          # starts the worked solution
END_THINK = "</think>"     # ends it; the answer follows
END = "<|end|>"            # ends the answer: generation stops here
SPECIALS = (EOT, THINK, END_THINK, END)


class Tokenizer:
    def __init__(self, name, enc, special_ids):
        self.name = name
        self.enc = enc
        self.special_ids = special_ids            # {"<think>": 257, ...}
        self.eot_id = special_ids[EOT]
        self.think_id = special_ids[THINK]
        self.end_think_id = special_ids[END_THINK]
        self.end_id = special_ids[END]
        self.vocab_size = enc.n_vocab

    def encode(self, text):
        # special tokens are written as text in our data, so they are always allowed
        return self.enc.encode(text, allowed_special="all")

    def decode(self, ids):
        return self.enc.decode(list(ids))

    def decode_tokens(self, ids):
        """One string per token (special tokens by name): for transcripts and --show_tokens."""
        return [self.enc.decode_single_token_bytes(i).decode("utf-8", errors="replace") for i in ids]


def token_label(text, token_id, prob):
    """text(id, p=0.97), or text(id, forced) for prob None (a tool wrote it); control characters escaped, so that
    a stray newline cannot break the line."""
    return f"{text.encode('unicode_escape').decode('ascii')}({token_id}, {'forced' if prob is None else f'p={prob:.2f}'})"


def _math_encoding():
    ranks = {bytes([i]): i for i in range(256)}
    special = {s: 256 + i for i, s in enumerate(SPECIALS)}
    # no merges exist, so the split pattern only has to cover every character
    enc = tiktoken.Encoding(name="math", pat_str=r"\d|[^\d]+", mergeable_ranks=ranks, special_tokens=special)
    return enc, special


def _gpt2_encoding():
    base = tiktoken.get_encoding("gpt2")
    # GPT-2 has <|endoftext|> = 50256; the other three are appended after it
    special = {EOT: base.eot_token}
    for i, s in enumerate(SPECIALS[1:]):
        special[s] = base.n_vocab + i
    enc = tiktoken.Encoding(name="gpt2-math", pat_str=base._pat_str,
                            mergeable_ranks=base._mergeable_ranks, special_tokens=special)
    return enc, special


def bpe_encoding(name, pattern, merged):
    """The encoding of a split pattern and merged tokens (bytes, in rank order: token 256 + i)."""
    ranks = {bytes([i]): i for i in range(256)} | {token: 256 + i for i, token in enumerate(merged)}
    if len(ranks) != 256 + len(merged):
        raise ValueError("a merged token repeats a byte or another merged token")
    special = {s: len(ranks) + i for i, s in enumerate(SPECIALS)}
    enc = tiktoken.Encoding(name=name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=special)
    return enc, special


def _read_bpe(name):
    path = name.removeprefix("bpe:")
    try:
        with open(path) as f:
            spec = json.load(f)
        return bpe_encoding(name, spec["pattern"], [bytes.fromhex(token) for token in spec["merged"]])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:  # missing, not JSON, wrong fields
        raise SystemExit(f"tokenizer {name!r}: cannot load {path} ({type(e).__name__}: {e}); "
                         f"make it with python train_tokenizer.py --out={path}")


_cache = {}


def get_tokenizer(name="math"):
    if name not in _cache:
        if name == "math":
            enc, special = _math_encoding()
        elif name == "gpt2":
            try:
                enc, special = _gpt2_encoding()
            except Exception as e:  # tiktoken raises requests/OS errors of many kinds when offline
                raise SystemExit(f"tokenizer 'gpt2': could not load tiktoken's GPT-2 ranks ({type(e).__name__}); "
                                 "they are downloaded once and cached: connect once, or use tokenizer='math'")
        elif name.startswith("bpe:"):
            enc, special = _read_bpe(name)
        else:
            raise SystemExit(f"unknown tokenizer {name!r}: use 'math', 'gpt2' or 'bpe:<path>' "
                             "(a file written by train_tokenizer.py)")
        _cache[name] = Tokenizer(name, enc, special)
    return _cache[name]


def bytes_per_token(tok, texts):
    """UTF-8 bytes per token over texts: how much a tokenizer compresses them (`math` is 1 on ASCII)."""
    n_tokens = sum(len(ids) for ids in tok.enc.encode_batch(texts, allowed_special="all"))
    return sum(len(t.encode()) for t in texts) / n_tokens
