"""Digit places (places.py) and the coupled position scheme that reads them (model.py, pos='coupled')."""
import random

import pytest
import torch

from generation import generate
from model import GPT, GPTConfig, token_logprobs
from places import PlaceTracker, completion_places, document_places, stream_places
from tasks import TASK_TYPES, completion, length_cells, make_problem, parse_prompt
from tokenizer import END_THINK, THINK, get_tokenizer

TOK = get_tokenizer("math")
BOX = {t: ((1, 2), (1, 3)) if t == "a_over_b_q" else ((1, 3), (1, 3)) for t in TASK_TYPES}


def tokens_and_places(prompt):
    """The problem, its tokens (strings), their places and their local positions."""
    p = parse_prompt(prompt)
    ids = TOK.encode(p.prompt + completion(p))
    places, local = zip(*document_places(TOK, ids))
    return p, TOK.decode_tokens(ids), list(places), list(local)


def digit_at(n, place):
    s = str(abs(n))
    return s[-place] if place <= len(s) else "0"


def test_documented_example():
    _, tokens, places, local = tokens_and_places("345+678=?")
    assert list(zip(tokens, places))[:12] == [("3", 3), ("4", 2), ("5", 1), ("+", 0), ("6", 3), ("7", 2), ("8", 1),
                                              ("=", 0), ("?", 0), (THINK, 1), ("5", 1), ("+", 1)]
    think_end = tokens.index(END_THINK)
    assert places[think_end - 5:] == [1, 1, 2, 3, 4, 5, 4, 3, 2, 1, 0]   # |3201 </think>1023<|end|>
    # local positions: a's digits 0, b's 1; each step counts from its separator; the run and the answer
    # keep one position for all their digits
    assert local[:9] == [0, 0, 0, 1, 1, 1, 1, 2, 3]
    assert local[9:24] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 0]   # <think>5+8+0=13+0=13,
    assert local[think_end - 5:] == [0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 2]


def test_local_positions_stay_bounded_as_numbers_grow():
    """Nothing but places grows with the numbers: the largest local position of a 9-digit problem is no
    larger than that of the 3-digit ones (the prompt's count of operators, or the longest step)."""
    rng = random.Random(3)
    for t in TASK_TYPES:
        short = max(max(l for _, l in document_places(TOK, TOK.encode(p.prompt + completion(p))))
                    for p in (make_problem(t, rng, BOX[t]) for _ in range(200)))
        cells = length_cells(t, BOX[t], 9)
        for _ in range(50):
            p = make_problem(t, rng, tuple((d, d) for d in rng.choice(cells)))
            assert max(l for _, l in document_places(TOK, TOK.encode(p.prompt + completion(p)))) <= short, p


def random_problems(n=60, lengths=range(1, 8)):
    rng = random.Random(0)
    for t in TASK_TYPES:
        for length in lengths:
            cells = length_cells(t, BOX[t], length)
            for _ in range(n // len(lengths) + 1):
                yield make_problem(t, rng, tuple((d, d) for d in rng.choice(cells)))


def steps_with_places(tokens, places):
    """(step text, place of its first token) for every step of the worked solution (between separators)."""
    start, bar = tokens.index(THINK) + 1, tokens.index("|")
    steps, current = [], []
    for i in range(start, bar):
        if tokens[i] in ",:;":
            steps.append(current)
            current = []
        else:
            current.append(i)
    steps.append(current)
    return [("".join(tokens[i] for i in step), places[step[0]]) for step in steps if step]


def test_a_column_step_sits_at_the_place_of_the_digits_it_reads():
    """The first digit of each addition and subtraction step is a digit of the numbers it works on at the
    step's place, the multiplicand digit of block j's step sits j - 1 places below it, and the dividend digit
    a division step brings down is at its place: attention finds them by place, at any length."""
    checked = 0
    for p in random_problems():
        ids = TOK.encode(p.prompt + completion(p))
        tokens, places = TOK.decode_tokens(ids), [q for q, _ in document_places(TOK, ids)]
        block = 0
        for step, place in steps_with_places(tokens, places):
            if step.startswith("*"):                  # a multiplication block: *d
                block += 1
                assert step[1] == digit_at(min(p.operands, key=lambda n: (len(str(n)), n == p.operands[0])), block)
                assert place == block
                continue
            if not step[:1].isdigit() or step[1:2] in ("<", "=", ">"):
                continue                              # headers (x=c-b) and compare steps
            if p.type in ("a_over_b_q", "x_times_b_eq_c_q"):
                dividend = p.operands[0] if p.type == "a_over_b_q" else p.operands[1]
                assert step.split("-")[0][-1] == digit_at(dividend, place), (p, step, place)
            elif p.type == "a_times_b_q":
                multiplicand = max(p.operands, key=lambda n: (len(str(n)), n == p.operands[0]))
                assert step[0] == digit_at(multiplicand, place - block + 1), (p, step, place)
            else:
                assert step[0] in {digit_at(n, place) for n in p.operands}, (p, step, place)
            checked += 1
    assert checked > 1000


def test_run_and_answer_digits_sit_at_their_place_value():
    for p in random_problems():
        ids = TOK.encode(p.prompt + completion(p))
        tokens, places = TOK.decode_tokens(ids), [q for q, _ in document_places(TOK, ids)]
        bar, end = tokens.index("|"), tokens.index(END_THINK)
        for tok, place in zip(tokens[bar + 1:end], places[bar + 1:end]):
            assert tok == digit_at(p.answer, place) or (tok == "0" and place > len(str(abs(p.answer)))), p
        answer = [(t, q) for t, q in zip(tokens[end + 1:], places[end + 1:]) if t.isdigit()]
        assert [q for _, q in answer] == list(range(len(str(abs(p.answer))), 0, -1)), p
        assert all(t == digit_at(p.answer, q) for t, q in answer), p
        assert places[end] == len(str(abs(p.answer))) + 1


def test_multiplication_blocks_start_at_the_multiplier_digit_place():
    _, tokens, places, _ = tokens_and_places("345*67=?")
    second = tokens.index(";")
    assert (tokens[second + 2], places[second + 2]) == ("6", 2)       # *6: is 67's tens digit
    assert places[second + 4] == 2                                  # its first step: column 2 of the result


def test_a_tracker_token_by_token_equals_the_whole_stream():
    rng = random.Random(1)
    docs = [make_problem(rng.choice(TASK_TYPES), rng, ((1, 3), (1, 2))) for _ in range(50)]
    ids = [i for p in docs for i in TOK.encode(p.prompt + completion(p)) + [TOK.eot_id]]
    whole = stream_places(TOK, ids)
    one_by_one = []
    for p in docs:
        prompt, rest = TOK.encode(p.prompt), TOK.encode(completion(p)) + [TOK.eot_id]
        tracker = PlaceTracker(TOK, prompt)
        one_by_one += tracker.prompt + [tracker.push(i) for i in rest]
    assert whole == one_by_one


def test_a_prompt_that_holds_shared_steps_keeps_the_places_they_were_written_at():
    """A Step-DPO pair's prompt is the question and the steps both sides share: its steps must sit where the
    model wrote them, not be read as more question (until this was fixed, every step pair of a coupled model
    was trained at places no generation gives)."""
    from mining import first_wrong_step
    for prompt in ("3456+6789=?", "808-814=?", "1222/47=?", "345*67=?", "x*7=2415, x=?"):
        p = parse_prompt(prompt)
        right = completion(p)
        whole = completion_places(TOK, TOK.encode(p.prompt), TOK.encode(right))
        wrong = right[:right.index(",") + 1] + "9" + right[right.index(",") + 2:]   # the second step slips
        step_prompt, chosen, _ = first_wrong_step(p.prompt, right, wrong)
        assert step_prompt == p.prompt + right[:right.index(",") + 1]
        prefix = TOK.encode(step_prompt)
        split = completion_places(TOK, prefix, TOK.encode(chosen))
        assert split == whole[:len(split)] and len(prefix) > len(TOK.encode(p.prompt)) + 1


def test_bare_answers_and_unknown_prompts_get_places_without_error():
    ids = TOK.encode("17+19=?36<|end|>")
    assert [q for q, _ in document_places(TOK, ids)][-3:] == [0, 0, 0]
    tracker = PlaceTracker(TOK, TOK.encode("hello?"))
    assert [q for q, _ in tracker.prompt] == [0] * 6 and tracker.push(TOK.think_id) == (1, 0)


# -----------------------------------------------------------------------------
# the model with coupled positions

def coupled_model():
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=192, vocab_size=TOK.vocab_size, n_layer=2, n_head=2, n_embd=32,
                         pos="coupled")).eval()


PROMPTS = ["345+678=?", "808-814=?", "7*345=?", "x*7=2415, x=?", "1222/47=?"]


def run(model, prompts, **kw):
    ids = [TOK.encode(p) for p in prompts]
    return generate(model, ids, 40, stop_ids=(TOK.end_id,), trackers=[PlaceTracker(TOK, i) for i in ids], **kw)


def test_coupled_kv_cache_equals_recomputation_and_padding_changes_nothing():
    model = coupled_model()
    cached, recomputed = run(model, PROMPTS), run(model, PROMPTS, use_cache=False)
    assert torch.equal(cached.tokens, recomputed.tokens)
    assert torch.allclose(cached.logprobs, recomputed.logprobs, atol=1e-5)
    for i, prompt in enumerate(PROMPTS):
        alone = run(model, [prompt])
        n = int(alone.mask.sum())
        assert torch.equal(alone.tokens[0, :n], cached.tokens[i, :n])


def test_coupled_generation_logprobs_match_a_forward_pass_with_places():
    model = coupled_model()
    gen = run(model, PROMPTS[:1], temperature=1.0, generator=torch.Generator().manual_seed(0))
    prompt = TOK.encode(PROMPTS[0])
    completion_ids = gen.token_lists()[0]
    ids = prompt + completion_ids
    places = document_places(TOK, ids)
    logits, _ = model(torch.tensor([ids]), places=torch.tensor([places]))          # (1, T, 2) places
    logps = token_logprobs(logits, torch.tensor([ids]))[0, len(prompt) - 1:]
    assert torch.allclose(logps, gen.logprobs[0, :len(completion_ids)], atol=1e-4)


def test_coupled_needs_places():
    model = coupled_model()
    with pytest.raises(SystemExit, match="places="):
        model(torch.tensor([TOK.encode("1+1=?")]))
    with pytest.raises(SystemExit, match="trackers="):
        generate(model, [TOK.encode("1+1=?")], 5)
    with pytest.raises(SystemExit, match="divide by 4"):
        GPTConfig(n_embd=36, n_head=6, pos="coupled")


def test_a_packed_window_with_the_document_mask_scores_each_document_as_if_alone():
    """Pretraining packs documents in a window; with batches.document_mask each one is scored exactly as
    SFT and the engine see it alone (a coupled model has no position that runs across documents)."""
    from batches import document_mask
    model = coupled_model()
    docs = [TOK.encode(p + completion(parse_prompt(p))) + [TOK.eot_id] for p in ("17+25=?", "x*7=28, x=?")]
    packed = torch.tensor([docs[0] + docs[1]])
    places = torch.tensor([stream_places(TOK, docs[0] + docs[1])])
    logits, _ = model(packed, places=places, attn_mask=document_mask(packed, TOK.eot_id))
    alone, _ = model(torch.tensor([docs[1]]), places=torch.tensor([stream_places(TOK, docs[1])]))
    assert torch.allclose(logits[0, len(docs[0]):], alone[0], atol=1e-5)


def test_dropping_finished_rows_changes_no_token_with_places():
    # compacting the batch must keep every row's place tracker with its row
    model = coupled_model()
    prompts = PROMPTS * 2
    free = run(model, prompts, compact=False)
    stop = tuple({int(free.tokens[i, 1 + i % 4]) for i in range(0, len(prompts), 2)})
    ids = [TOK.encode(p) for p in prompts]
    whole, compacted = (generate(model, ids, 40, stop_ids=stop, trackers=[PlaceTracker(TOK, i) for i in ids],
                                 compact=c) for c in (False, True))
    assert 4 * int((whole.mask.sum(dim=1) < 20).sum()) >= len(prompts)
    assert torch.equal(whole.tokens, compacted.tokens) and torch.equal(whole.stopped, compacted.stopped)
    assert torch.allclose(whole.logprobs, compacted.logprobs, atol=1e-5)
