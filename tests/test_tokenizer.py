"""The trained BPE tokenizer (train_tokenizer.py, tokenizer.py's bpe:<path>) on a small corpus: seconds, offline."""
import importlib
import json
import random
import sys

import pytest
import regex

from tokenizer import SPECIALS, Tokenizer, bpe_encoding, bytes_per_token, get_tokenizer
from train_tokenizer import PATTERN, chunk_counts, encode_chunk, train_bpe

N_MERGES = 60         # of the 80 the corpus has before every chunk is one token
SAMPLES = ["Mia has 12 apples.\nShe eats 3.\n", "12345 apples", "Zoë’s café: 3½ €, naïve 東京 🙂\r\n\ttabs  and   spaces ",
           "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", "It's 7:30; they'll sell 1,000,000 pens!!!",
           "17+25=?<think>7+5+0=12,1+2+1=4</think>42<|end|><|endoftext|>", "", "\n\n\n", "a", "   "]


def word_problems(n, seed=0):
    """n GSM8K-like texts with numbers, names and a worked solution."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        name, thing = rng.choice(["Mia", "Liam", "Emma", "Noah", "Ava"]), rng.choice(["apples", "pens", "coins"])
        a, b = rng.randint(1, 999), rng.randint(1, 99)
        verb, op, c = rng.choice([("buys", "+", a + b), ("gives away", "-", a - b), ("doubles", "*", a * 2)])
        b = 2 if op == "*" else b
        texts.append(f"{name} has {a} {thing}. Then {name} {verb} {b} of them. How many {thing} does {name} have?\n"
                     f"{name} has {a}{op}{b} = <<{a}{op}{b}={c}>>{c} {thing}.\n#### {c}")
    return texts


CORPUS = word_problems(300)


@pytest.fixture(scope="module")
def trained():
    """(merged tokens, each training chunk's final tokens, the Tokenizer) for CORPUS."""
    merged, states = train_bpe(chunk_counts(CORPUS), N_MERGES)
    return merged, states, Tokenizer("bpe:test", *bpe_encoding("bpe:test", PATTERN, merged))


def run_main(monkeypatch, *args):
    """train_tokenizer.main() in this process, from its defaults and args."""
    module = importlib.reload(importlib.import_module("train_tokenizer"))
    monkeypatch.setattr(sys, "argv", ["train_tokenizer.py", *args])
    module.main()


def test_digits_stay_single_tokens(trained):
    merged, _, tok = trained
    assert len(merged) == N_MERGES
    for i in range(256, 256 + N_MERGES):
        assert not any(chr(b).isdigit() for b in tok.enc.decode_single_token_bytes(i)), i
    ids = tok.encode("12345 apples")
    assert ids[:5] == list(b"12345") and len(ids) < len("12345 apples")  # " apples" is merged


def test_special_tokens_follow_the_merges(trained):
    _, _, tok = trained
    assert tok.vocab_size == 256 + N_MERGES + len(SPECIALS)
    for i, s in enumerate(SPECIALS):
        assert tok.encode(s) == [256 + N_MERGES + i] == [tok.special_ids[s]] and tok.decode(tok.encode(s)) == s
    ids = tok.encode("17+25=?<think>7+5+0=12</think>42<|end|>")
    assert ids.count(tok.think_id) == ids.count(tok.end_think_id) == ids.count(tok.end_id) == 1


def test_encode_decode_round_trips(trained):
    _, _, tok = trained
    for text in SAMPLES + CORPUS[:20]:
        assert tok.decode(tok.encode(text)) == text


def test_training_is_deterministic(trained):
    merged, _, _ = trained
    assert train_bpe(chunk_counts(CORPUS), N_MERGES)[0] == merged
    # ties are broken by the bytes, not by the order chunks were first seen in
    assert train_bpe(chunk_counts(CORPUS[::-1]), N_MERGES)[0] == merged


def test_training_stops_when_every_chunk_is_one_token():
    merged, states = train_bpe(chunk_counts(CORPUS), 10 ** 6)
    assert all(parts == [chunk] for chunk, parts in states.items()) and len(merged) < 10 ** 6


def test_compresses_the_corpus(trained):
    _, _, tok = trained
    assert bytes_per_token(tok, CORPUS) > 1.5
    assert bytes_per_token(get_tokenizer("math"), CORPUS) == 1.0


def test_tiktoken_gives_the_tokens_training_counted(trained):
    """Exact equality, both ways: (1) tiktoken's tokens for every training chunk are the trainer's final tokens
    for it, so the counts training maximised are counts of the tokens the model will see; (2) on new text,
    tiktoken equals Python's split by PATTERN followed by tiktoken's merge rule (encode_chunk: the lowest-ranked
    neighbouring pair first, leftmost on ties). The sequential rule "apply merge 1 everywhere, then merge 2, ..."
    is not asserted: with tokens ranked by their bytes it can differ from tiktoken, which is why the trainer
    does not use it."""
    merged, states, tok = trained
    ranks = {bytes([b]): b for b in range(256)} | {t: 256 + i for i, t in enumerate(merged)}
    for chunk, parts in states.items():
        assert [tok.enc.decode_single_token_bytes(i) for i in tok.enc.encode_ordinary(chunk.decode())] == parts
    for text in SAMPLES + word_problems(20, seed=1):
        python = [t for chunk in regex.findall(PATTERN, text) for t in encode_chunk(chunk.encode(), ranks)]
        assert [tok.enc.decode_single_token_bytes(i) for i in tok.enc.encode_ordinary(text)] == python


def test_main_writes_a_file_that_get_tokenizer_loads(tmp_path, monkeypatch, capsys):
    problems = tmp_path / "gsm8k.jsonl"
    problems.write_text("".join(json.dumps({"question": t.split("\n")[0], "answer": t.split("\n", 1)[1]}) + "\n"
                                for t in CORPUS))
    out = tmp_path / "tok" / "words.json"
    args = [f"--out={out}", f"--gsm8k_file={problems}", f"--eval_file={problems}", "--n_stories=20",
            "--vocab_size=400"]
    run_main(monkeypatch, *args)
    assert f"bpe:{out}: " in capsys.readouterr().out        # the bytes-per-token table
    tok = get_tokenizer(f"bpe:{out}")
    assert tok.name == f"bpe:{out}" and tok.vocab_size == 400 == json.load(open(out))["vocab_size"]
    assert tok.decode(tok.encode(CORPUS[0])) == CORPUS[0] and tok.encode("907")[:3] == list(b"907")
    with pytest.raises(SystemExit, match="--overwrite=True"):
        run_main(monkeypatch, *args)
    run_main(monkeypatch, *args, "--overwrite=True")


def test_bad_input_is_one_clear_line(tmp_path, monkeypatch):
    missing = tmp_path / "missing.json"
    with pytest.raises(SystemExit, match=f"{missing}.*train_tokenizer.py"):
        get_tokenizer(f"bpe:{missing}")
    for i, text in enumerate(["not json", '{"pattern": "\\\\s+"}', '{"pattern": "\\\\s+", "merged": ["zz"]}',
                              '{"pattern": "\\\\s+", "merged": ["61"]}']):  # no JSON, no merges, bad hex, a byte
        path = tmp_path / f"bad{i}.json"
        path.write_text(text)
        with pytest.raises(SystemExit, match=f"{path}.*train_tokenizer.py") as e:
            get_tokenizer(f"bpe:{path}")
        assert "\n" not in str(e.value)
    with pytest.raises(SystemExit, match="vocab_size"):
        run_main(monkeypatch, f"--out={tmp_path}/small.json", "--vocab_size=100")
