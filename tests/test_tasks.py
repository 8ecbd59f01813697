import random
import re

import pytest

from tasks import (TASK_TYPES, Problem, check_steps, classify_error, completion, extract_answer, has_canonical_format,
                   is_correct, make_problem, ood_task_digits, problem_from_row, sample_problems, solve,
                   validate_task_digits, worked_solution)
from tokenizer import END, END_THINK, THINK, get_tokenizer

WIDE = {t: ((1, 4), (1, 4)) for t in TASK_TYPES} | {"a_over_b_q": ((1, 2), (1, 4))}


def python_says(p):
    """The answer by Python's own arithmetic on the prompt's numbers, independent of tasks.py."""
    a, b = (int(n) for n in re.findall(r"(?<==)-\d+|\d+", p.prompt))   # a '-' right after '=' is a sign
    if p.type == "a_over_b_q":
        assert a % b == 0, p
        return a // b
    if p.type == "x_times_b_eq_c_q":   # x*a=b
        assert b % a == 0, p
        return b // a
    return {"a_plus_b_q": a + b, "a_minus_b_q": a - b, "a_times_b_q": a * b,
            "x_plus_b_eq_c_q": b - a, "b_minus_x_eq_c_q": a - b}[p.type]


def assert_right(p):
    c = completion(p)
    assert p.answer == python_says(p), p
    assert solve(p)[1] == p.answer
    assert check_steps(p, worked_solution(p)) == [], (p, worked_solution(p))
    assert extract_answer(c) == str(p.answer) and is_correct(c, p.answer) and has_canonical_format(c)
    assert extract_answer(completion(p, worked=False)) == str(p.answer)
    assert classify_error(p, c) == "correct"


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_random_problems_are_solved_right(task_type):
    rng = random.Random(0)
    for _ in range(2000):
        assert_right(make_problem(task_type, rng, WIDE[task_type]))


def test_small_ranges_exhaustively():
    for a in range(110):      # through 99 -> 100, so every carry and borrow pattern of short numbers
        for b in range(30):
            assert_right(Problem("a_plus_b_q", f"{a}+{b}=?", a + b))
            assert_right(Problem("a_minus_b_q", f"{a}-{b}=?", a - b))
            assert_right(Problem("a_times_b_q", f"{a}*{b}=?", a * b))
            assert_right(Problem("x_plus_b_eq_c_q", f"x+{b}={a + b}, x=?", a))
            assert_right(Problem("b_minus_x_eq_c_q", f"{b}-x={b - a}, x=?", a))
            if b >= 2:
                assert_right(Problem("a_over_b_q", f"{a * b}/{b}=?", a))
                assert_right(Problem("x_times_b_eq_c_q", f"x*{b}={a * b}, x=?", a))


def test_worked_solutions_match_the_documented_examples():
    examples = {
        ("a_plus_b_q", "345+678=?"): "5+8+0=13,4+7+1=12,3+6+1=10",
        ("a_minus_b_q", "345-178=?"): "5-8-0+10=7,4-7-1+10=6,3-1-1=1",
        ("a_minus_b_q", "345-678=?"): "-(678-345):8-5-0=3,7-4-0=3,6-3-0=3",
        ("a_times_b_q", "345*7=?"): "5*7+0=35,4*7+3=31,3*7+3=24",
        ("a_times_b_q", "345*67=?"): "345*7:5*7+0=35,4*7+3=31,3*7+3=24;345*6:5*6+0=30,4*6+3=27,3*6+2=20;"
                                     "2415+20700=23115",
        ("a_over_b_q", "738/6=?"): "7/6=1r1,13/6=2r1,18/6=3r0",
        ("x_plus_b_eq_c_q", "x+345=1023, x=?"): "x=1023-345:3-5-0+10=8,2-4-1+10=7,0-3-1+10=6,1-0-1=0",
        ("b_minus_x_eq_c_q", "12-x=-333, x=?"): "x=12+333:2+3+0=5,1+3+0=4,0+3+0=3",
        ("b_minus_x_eq_c_q", "345-x=12, x=?"): "x=345-12:5-2-0=3,4-1-0=3,3-0-0=3",
        ("x_times_b_eq_c_q", "x*7=2415, x=?"): "x=2415/7:2/7=0r2,24/7=3r3,31/7=4r3,35/7=5r0",
    }
    for (t, prompt), worked in examples.items():
        p = Problem(t, prompt, 0)
        assert worked_solution(p) == worked
    p = Problem("a_plus_b_q", "345+678=?", 1023)
    assert completion(p) == f"{THINK}5+8+0=13,4+7+1=12,3+6+1=10{END_THINK}1023{END}"
    assert completion(p, worked=False) == f"1023{END}"


def test_completions_of_3_digit_problems_stay_short():
    tok, rng = get_tokenizer("math"), random.Random(1)
    three, one = (3, 3), (1, 1)
    small = {t: (three, three) for t in TASK_TYPES} | {"a_times_b_q": (three, one), "a_over_b_q": (one, three),
                                                      "x_times_b_eq_c_q": (three, one)}
    for t in TASK_TYPES:
        longest = max(len(tok.encode(completion(make_problem(t, rng, small[t])))) for _ in range(300))
        assert longest <= 70, (t, longest)


def test_check_steps_catches_corrupted_steps():
    rng = random.Random(2)
    for t in TASK_TYPES:
        for _ in range(300):
            p = make_problem(t, rng, WIDE[t])
            text, answer = solve(p, slip=(0, 1))
            assert answer != p.answer and check_steps(p, text), (p, text)
    p = Problem("a_plus_b_q", "345+678=?", 1023)
    assert check_steps(p, "5+8+0=13,4+7+1=13,3+6+1=10") == ["step 2 '4+7+1=13' is false"]
    assert check_steps(p, "5+8+0=13,4+7+0=11,3+6+1=10") == ["step 2 '4+7+0=11' should be '4+7+1=12'"]
    assert check_steps(p, "5+8+0=13,4+7+1=12") == ["2 steps where 3 are needed"]
    assert check_steps(p, "5+8+0=13;4+7+1=12;3+6+1=10")   # right steps, wrong separators
    assert check_steps(Problem("a_over_b_q", "738/6=?", 123), "7/6=0r7,13/6=2r1,18/6=3r0")   # remainder >= divisor


def test_make_problem_draws_digit_counts_uniformly():
    rng = random.Random(3)
    problems = [make_problem("a_over_b_q", rng, ((1, 1), (1, 3))) for _ in range(3000)]
    assert all(2 <= p.operands[1] <= 9 and 1 <= p.answer <= 999 for p in problems)
    share = sum(p.answer < 10 for p in problems) / len(problems)
    assert 0.28 < share < 0.39   # a third of quotients have 1 digit, not 1%
    assert all(p.answer >= 0 for p in (make_problem(t, rng, WIDE[t]) for t in TASK_TYPES[4:] for _ in range(300)))


def test_cell_is_the_digit_counts_the_problem_was_drawn_with():
    rng = random.Random(9)
    for task_type in TASK_TYPES:
        for cell in [(1, 1), (1, 2), (3, 1), (2, 3)]:
            for _ in range(50):
                assert make_problem(task_type, rng, tuple((d, d) for d in cell)).cell == cell, (task_type, cell)
    assert Problem("a_minus_b_q", "345-17=?", 328).cell == (3, 2)
    assert Problem("a_over_b_q", "738/6=?", 123).cell == (1, 3)            # divisor, quotient
    assert Problem("x_plus_b_eq_c_q", "x+345=1023, x=?", 678).cell == (3, 3)   # x, b: not c's 4 digits
    assert Problem("b_minus_x_eq_c_q", "12-x=-333, x=?", 345).cell == (2, 3)


def test_sample_problems_distinct_excluding_and_deterministic():
    digits = {"a_plus_b_q": ((1, 1), (1, 1)), "a_over_b_q": ((1, 1), (1, 1))}
    first = sample_problems(digits, 40, random.Random(4))
    assert first == sample_problems(digits, 40, random.Random(4))
    assert len({p.prompt for p in first}) == 80
    rest = sample_problems(digits, 30, random.Random(5), exclude={p.prompt for p in first})
    assert not {p.prompt for p in rest} & {p.prompt for p in first}
    with pytest.raises(SystemExit, match="a_over_b_q .* has only 72 distinct problems"):
        sample_problems(digits, 73, random.Random(6))
    with pytest.raises(SystemExit, match="found only 60 of 61"):
        sample_problems({"a_plus_b_q": ((1, 1), (1, 1))}, 61, random.Random(7), exclude={p.prompt for p in first})
    capped = sample_problems({"a_plus_b_q": ((1, 1), (1, 3))}, 300, random.Random(8), max_cell_share=0.2)
    assert sum(p.answer < 19 and len(p.prompt) == 5 for p in capped) == 20   # 20% of the 100 1+1-digit sums


def test_ood_digits_are_longer():
    assert ood_task_digits({"a_times_b_q": ((1, 3), (1, 1))}, 1) == {"a_times_b_q": ((4, 4), (1, 1))}
    assert ood_task_digits({"a_over_b_q": ((1, 1), (1, 3))}, 1) == {"a_over_b_q": ((1, 1), (4, 4))}
    assert ood_task_digits({"a_plus_b_q": ((2, 3), (1, 3))}, 2) == {"a_plus_b_q": ((4, 5), (1, 5))}


def test_problem_from_row():
    p = Problem("b_minus_x_eq_c_q", "12-x=-333, x=?", 345)
    assert problem_from_row({"Q": p.prompt, "A": "345", "type": p.type}) == p
    assert p.operands == (12, -333)
    with pytest.raises(SystemExit, match="unknown"):
        problem_from_row({"Q": "1+1=?", "A": "2", "type": "add"})
    with pytest.raises(SystemExit, match="not a a_times_b_q prompt"):
        problem_from_row({"Q": "1+1=?", "A": "2", "type": "a_times_b_q"})


@pytest.mark.parametrize("text, expected", [
    (f"{THINK}5+8+0=13{END_THINK}13{END}", "13"),
    (f"{THINK}1+2+0=3{END_THINK}-333{END}", "-333"),
    (f"42{END}", "42"),
    ("blah 7 #### 1,023 and 5", "1,023"),
    ("So the Answer is: 18.0, not 17", "18.0"),
    ("we add 3 and 4. Therefore x = 3+4 = 7. Check: 9", "7"),
    ("Therefore the result is -5", "-5"),
    ("first 12, then 345-678", "678"),
    ("the answer: -0", "-0"),
    ("no digits here", None),
    ("", None),
])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_extract_answer_prefers_canonical_over_fallbacks():
    assert extract_answer(f"The answer is 5{END_THINK}6{END}") == "6"
    assert extract_answer("#### 9 The answer is 8") == "9"


@pytest.mark.parametrize("text, answer, expected", [
    (f"-0{END}", 0, True), (f"007{END}", 7, True), ("The answer is 18.0", 18, True), ("#### 1,023", 1023, True),
    (f"18.5{END}", 18, False), (f"-7{END}", 7, False), ("nothing", 0, False), (f"{END_THINK}1023{END}", 1023, True),
])
def test_is_correct(text, answer, expected):
    assert is_correct(text, answer) is expected


def test_has_canonical_format():
    assert has_canonical_format(f"{THINK}x{END_THINK}-12{END}") and has_canonical_format(f"0{END}")
    for text in (f"007{END}", f"-0{END}", f"1,023{END}", "The answer is 5", f"{THINK}x{END_THINK}12", f"x 12{END}"):
        assert not has_canonical_format(text), text


@pytest.mark.parametrize("value, message", [
    ({"add": ((1, 3), (1, 3))}, "tasks: unknown task type 'add'; allowed: a_plus_b_q, "),
    ({"a_plus_b_q": ((0, 3), (1, 3))}, r"the first operand's digits \(0, 3\) must have 1 <= lo <= hi"),
    ({"a_plus_b_q": ((1, 3), (3, 2))}, "second operand's digits"),
    ({"a_plus_b_q": (1, 3)}, r"must be \(\(lo, hi\), \(lo, hi\)\)"),
    ({"a_over_b_q": ((1, 1.5), (1, 3))}, "must be"),
    ({}, "non-empty dict"),
    ([1, 2], "non-empty dict"),
])
def test_validate_task_digits(value, message):
    with pytest.raises(SystemExit, match=message) as e:
        validate_task_digits(value, "tasks")
    assert "\n" not in str(e.value)


def test_validate_task_digits_accepts_good_configs():
    validate_task_digits(WIDE, "tasks")
    validate_task_digits({"a_over_b_q": [[1, 1], [1, 3]]}, "tasks")


def canonical(worked, answer):
    return f"{THINK}{worked}{END_THINK}{answer}{END}"


def test_classify_error():
    p = Problem("a_plus_b_q", "345+678=?", 1023)
    w = worked_solution(p)
    assert classify_error(p, completion(p)) == "correct"
    assert classify_error(p, "I don't know") == "format"
    assert classify_error(p, "The answer is 1024") == "format"
    assert classify_error(p, canonical(w, 1024)) == "off_by_one"
    assert classify_error(p, canonical(w, 1123)) == "off_by_ten"
    assert classify_error(p, canonical(w, -333)) == "wrong_operation"
    assert classify_error(p, canonical("5+8+0=13,4+7+0=11,3+6+1=10", 1013)) == "carry"
    assert classify_error(p, canonical(w, 1500)) == "other"
    q = Problem("a_minus_b_q", "345-178=?", 167)
    assert classify_error(q, canonical("5-8-0+10=7,4-7-0=7,3-1-0=2", 277)) == "carry"   # borrow dropped
    assert classify_error(q, f"523{END}") == "wrong_operation"
