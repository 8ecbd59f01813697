import json
from contextlib import nullcontext
from types import SimpleNamespace

import pytest
import torch

import gsm8k
from generation import ids_containing, token_tool
from generation import generate
from model import GPT, GPTConfig
from tokenizer import get_tokenizer


def test_load_parses_the_vendored_rows():
    train, test = gsm8k.load("train"), gsm8k.load("test")
    assert (len(train), len(test)) == (7473, 1319)
    first = train[0]
    assert first.question.startswith("Natalia sold clips to 48 of her friends")
    assert first.solution.endswith("\n#### 72") and first.answer == 72
    assert any(r.solution.endswith("#### 1,080") and r.answer == 1080 for r in train + test)   # commas removed


def test_missing_files_and_malformed_rows_are_one_line_errors(tmp_path):
    with pytest.raises(SystemExit, match=r"test\.jsonl: not found"):
        gsm8k.load("test", path=str(tmp_path))
    with pytest.raises(SystemExit, match="split 'dev' is unknown"):
        gsm8k.load("dev")
    good = json.dumps({"question": "1+1?", "answer": "1+1=<<1+1=2>>2\n#### 2"})
    for bad, why in [("{not json", "not a GSM8K row"), (json.dumps({"question": "q"}), "not a GSM8K row"),
                     (json.dumps({"question": "q", "answer": "no final line"}), "ending with a line '#### N'"),
                     (json.dumps({"question": "q", "answer": "#### 2.5"}), "ending with a line '#### N'")]:
        (tmp_path / "train.jsonl").write_text(f"{good}\n{bad}\n")
        with pytest.raises(SystemExit, match=rf"train\.jsonl:2: .*{why}") as e:
            gsm8k.load("train", path=str(tmp_path))
        assert "\n" not in str(e.value)


def test_prompt_completion_and_the_two_shot_layout():
    assert gsm8k.prompt("How many?") == "Question: How many?\nAnswer:"
    assert gsm8k.completion("2+2=<<2+2=4>>4\n#### 4") == " 2+2=<<2+2=4>>4\n#### 4<|end|>"
    shots = [("q1", "s1\n#### 1"), ("q2", "s2\n#### 2")]
    assert gsm8k.few_shot_prompt("q", shots) == ("Question: q1\nAnswer: s1\n#### 1\n\n"
                                                 "Question: q2\nAnswer: s2\n#### 2\n\nQuestion: q\nAnswer:")


def test_default_shots_are_short_worked_train_examples():
    train = gsm8k.load("train")
    shots = gsm8k.default_shots(train)
    assert shots == gsm8k.default_shots(train) and len(shots) == 2
    assert shots[0][0] == "What is fifteen more than a quarter of 48?"
    assert all(s.count("<<") >= 2 and len(q) + len(s) < 200 for q, s in shots)


@pytest.mark.parametrize("text, answer", [
    (" He pays 3*4=<<3*4=12>>12.\n#### 12<|end|>", "12"),     # '#### N' beats the last number
    ("so 5 boxes.\n#### 72<|end|>", "72"),
    ("The answer is 30. Then 4 more.", "30"),
    ("She has 3 cats and 12 apples", "12"),                 # the last number, its unit after it
    ("It costs $1,200 in all.", "1,200"),
    ("#### $5", "5"),
    ("The answer is $1,234.00.", "1,234.00"),
    ("The temperature falls to -3", "-3"),
    ("#### -3", "-3"),
    (" 2+2=<<2+2=4>>4\n#### 4\n\nQuestion: Tom has 7 pens. How many?\nAnswer: 7\n#### 7", "4"),   # runaway
    (" It is 6*7=<<6*7=42>>42 pens\n\nQuestion: Tom has 7 pens.", "42"),
    ("no number here", None),
])
def test_answer_extraction(text, answer):
    assert gsm8k.extract_answer(text) == answer


def test_is_correct_compares_numbers_in_the_completion_s_own_part():
    assert gsm8k.is_correct(" 1,000+200=<<1000+200=1200>>1200\n#### 1,200<|end|>", 1200)
    assert gsm8k.is_correct("The answer is $1,234.00.", 1234)
    assert not gsm8k.is_correct(" 6*7=<<6*7=42>>42\n\nQuestion: Tom has 7 pens.\nAnswer: #### 7", 7)


@pytest.mark.parametrize("expression, result", [
    ("48/2", "24"), ("48+24", "72"), ("100-50-30-15", "5"), ("3*12", "36"), ("12/60", "0.2"),
    ("(5/100)*30", "1.5"), ("2*(3+4)", "14"), ("36*.5", "18"), ("0.2*50", "10"), ("1/8", "0.125"),
    ("10/3", "3.33"), ("2-5", "-3"), ("-(2+3)*2", "-10"), (" 4 * 25 ", "100"), ("0.1+0.2", "0.3"),
])
def test_calculate_does_gsm8k_arithmetic(expression, result):
    assert gsm8k.calculate(expression) == result


@pytest.mark.parametrize("expression", [
    "x*2", "__import__('os')", "abs(-3)", "2**10", "2^3", "7//2", "1/0", "1e999", "0x10", "3+", "",
    "9" * 51, "(" * 30 + "1" + ")" * 30,
])
def test_calculate_rejects_anything_but_arithmetic(expression):
    assert gsm8k.calculate(expression) is None


def test_calculator_fill_answers_only_an_open_annotation():
    assert gsm8k.calculator_fill("Natalia sold 48/2 = <<48/2=") == "24>>"
    assert gsm8k.calculator_fill("<<48/2=24>>24 clips.\nThen 48+24 = <<48+24=") == "72>>"
    assert gsm8k.calculator_fill("<<48/2=24>>24") is None        # closed
    assert gsm8k.calculator_fill("<<48/2=24>>24 = ") is None     # an '=' outside an annotation
    assert gsm8k.calculator_fill("So 48/2 =") is None            # no annotation
    assert gsm8k.calculator_fill("<<half of 48=") is None        # not arithmetic: the model goes on alone


def test_model_calculator_asks_only_binary_whole_number_operations():
    torch.manual_seed(0)
    tok = get_tokenizer("math")
    model = GPT(GPTConfig(block_size=64, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16)).eval()
    fill = gsm8k.model_calculator(model, tok, SimpleNamespace(autocast=nullcontext()), max_new_tokens=8)
    for text in ["<<2*(3+4)=", "<<7/2=", "<<1.5*2=", "<<48/2=24>>24", "<<48/2=24>>"]:
        assert fill(text) is None
    got = fill("so 48/2 = <<48/2=")   # an untrained model: any number, or None when it writes none
    assert got is None or (got.endswith(">>") and gsm8k.calculate(got[:-2]) is not None)


def test_the_token_wrapper_decodes_and_encodes():
    tok = get_tokenizer("math")
    assert ids_containing(tok, "=") == tuple(tok.encode("="))
    fill = token_tool(tok, gsm8k.calculator_fill)
    assert fill(0, tok.encode("so 48/2 = <<48/2=")) == tok.encode("24>>")
    assert fill(0, tok.encode("so 48/2 = 24")) is None

# -----------------------------------------------------------------------------
# tool use in generation.generate

PROMPTS = [[i, i + 1, i + 2][:1 + i % 3] for i in range(1, 9)]
FORCED = [41, 42, 43]


def lively():
    """A tiny random model with its weights drawn wide: with the usual small init its greedy output repeats one
    token, with these it varies, so that a trigger token turns up in many rows, several times."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=64, vocab_size=50, n_layer=2, n_head=4, n_embd=32)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    return model


def common_token(model):
    """The token the model's greedy outputs hold most often: the trigger of the tests."""
    tokens = generate(model, PROMPTS, 20).tokens.flatten()
    return int(tokens.mode().values)


def forcing_after(trigger, forced, calls):
    """A tool that forces `forced` after every sampled trigger token; calls records (row, ids) it was asked."""
    def fill(row, ids):
        calls.append((row, list(ids)))
        return forced if ids[-1] == trigger else None
    return fill


def expected_forced(row, n, trigger, forced):
    """Where `forced` must stand in a row of n generated tokens: after each trigger that was not forced itself."""
    mask, i = [False] * n, 0
    while i < n:
        if row[i] == trigger:
            mask[i + 1:i + 1 + len(forced)] = [True] * len(mask[i + 1:i + 1 + len(forced)])
            i += len(forced)
        i += 1
    return mask


@pytest.mark.parametrize("echo", [False, True])
def test_a_tool_forces_its_tokens_right_after_the_trigger(echo):
    # with echo the forced tokens hold the trigger too: the tool is not asked after those, only after its samples
    model = lively()
    free = generate(model, PROMPTS, 20)
    trigger = common_token(model)
    forced = [41, trigger, 43] if echo else FORCED
    calls = []
    gen = generate(model, PROMPTS, 20, tools=forcing_after(trigger, forced, calls), tool_ids=[trigger])
    assert len(calls) >= 2 * len(PROMPTS)   # every row is forced, most more than once
    for b in range(len(PROMPTS)):
        row, n = gen.tokens[b].tolist(), int(gen.mask[b].sum())
        first = free.tokens[b].tolist().index(trigger)
        assert row[:first + 1] == free.tokens[b, :first + 1].tolist()   # the model's own tokens until the trigger
        assert row[first + 1:first + 4] == forced[:n - first - 1]       # cut short by max_new_tokens
        want = expected_forced(row, n, trigger, forced)
        assert gen.forced[b, :n].tolist() == want and not gen.forced[b, n:].any()
        assert [t for t, f in zip(row, want) if f] == (forced * n)[:sum(want)]
        asked = [ids for r, ids in calls if r == b]   # once per sampled trigger, with the ids so far
        assert asked == [row[:i + 1] for i in range(n) if row[i] == trigger and not want[i]]


def test_without_tool_ids_the_tool_is_asked_after_every_sampled_token():
    model = lively()
    calls = []
    gen = generate(model, PROMPTS[:2], 6, tools=forcing_after(-1, FORCED, calls))
    assert sorted(len(ids) for _, ids in calls) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]
    assert torch.equal(gen.tokens, generate(model, PROMPTS[:2], 6).tokens) and not gen.forced.any()


def test_generation_without_tools_is_unchanged_and_forces_nothing():
    model = lively()
    plain = generate(model, PROMPTS, 20, temperature=1.0, generator=torch.Generator().manual_seed(0))
    idle = generate(model, PROMPTS, 20, temperature=1.0, generator=torch.Generator().manual_seed(0),
                    tools=lambda row, ids: None)
    assert not plain.forced.any() and not idle.forced.any()
    assert torch.equal(plain.tokens, idle.tokens) and torch.equal(plain.logprobs, idle.logprobs)


def test_tools_agree_with_and_without_the_kv_cache_and_row_dropping():
    # rows stop (and leave the batch) while others are being forced: every variant of the engine must give
    # the same tokens, log-probs and forced positions
    model = lively()
    trigger = common_token(model)
    stop_ids = (29, 46)   # three rows stop before 12 tokens, one of them after a forced run
    runs = [generate(model, PROMPTS, 24, stop_ids=stop_ids, tools=forcing_after(trigger, FORCED, []),
                     tool_ids=[trigger], use_cache=use_cache, compact=compact)
            for use_cache in (True, False) for compact in (True, False)]
    lengths = runs[0].mask.sum(dim=1)
    assert runs[0].forced.any() and 4 * int((lengths < 12).sum()) >= len(PROMPTS)   # a quarter stop early
    for other in runs[1:]:
        assert torch.equal(runs[0].tokens, other.tokens) and torch.equal(runs[0].forced, other.forced)
        assert torch.equal(runs[0].mask, other.mask) and torch.equal(runs[0].stopped, other.stopped)
        assert torch.allclose(runs[0].logprobs, other.logprobs, atol=1e-5)


def test_a_tool_cannot_force_a_stop_token():
    model = lively()
    trigger, stop = common_token(model), 41
    gen = generate(model, PROMPTS, 20, stop_ids=(stop,), tools=lambda row, ids: [stop, 42, stop],
                   tool_ids=[trigger])
    assert gen.forced.any() and stop not in gen.tokens[gen.forced].tolist()
    assert (gen.tokens[gen.forced] == 42).all()
