import random
import re

import pytest

from tasks import (TASK_TYPES, Problem, check_steps, classify_error, completion, corner_problem, extract_answer,
                   has_canonical_format, is_correct, length_cells, length_problems, make_problem, normalize_prompt,
                   outside_box, parse_prompt, problem_from_row, problem_length, sample_problems, solve,
                   uniform_problem, validate_task_digits, worked_solution)
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
            if b >= 1:
                assert_right(Problem("a_over_b_q", f"{a * b}/{b}=?", a))
                assert_right(Problem("x_times_b_eq_c_q", f"x*{b}={a * b}, x=?", a))


def test_worked_solutions_match_the_documented_examples():
    examples = {
        ("a_plus_b_q", "345+678=?"): "5+8+0=13+0=13,4+7+1=11+1=12,3+6+1=9+1=10|3201",
        ("a_plus_b_q", "999+1=?"): "9+1+0=10+0=10,9+0+1=9+1=10,9+0+1=9+1=10|0001",
        ("a_minus_b_q", "345-178=?"): "3>1:5-8-0+10=7,4-7-1+10=6,3-1-1=1|761",
        ("a_minus_b_q", "808-814=?"): "8=8,0<1:4-8-0+10=6,1-0-1=0,8-8-0=0|600",
        ("a_minus_b_q", "12-345=?"): "0<3:5-2-0=3,4-1-0=3,3-0-0=3|333",
        ("a_minus_b_q", "5-5=?"): "5=5:5-5-0=0|0",
        ("a_times_b_q", "345*7=?"): "*7:5*7+0+0=35+0=35,4*7+0+3=28+3=31,3*7+0+3=21+3=24|5142",
        ("a_times_b_q", "7*345=?"): "*7:5*7+0+0=35+0=35,4*7+0+3=28+3=31,3*7+0+3=21+3=24|5142",  # the shorter multiplies
        ("a_times_b_q", "345*67=?"): "*7:5*7+0+0=35+0=35,4*7+0+3=28+3=31,3*7+0+3=21+3=24;"
                                     "*6:5*6+1+0=30+1=31,4*6+4+3=24+7=31,3*6+2+3=18+5=23|51132",
        ("a_over_b_q", "738/6=?"): "7-1*6[6*1=6+0=6 7-6-0=1],13-2*6[6*2=12+0=12 3-2-0=1 1-1-0=0],"
                                   "18-3*6[6*3=18+0=18 8-8-0=0 1-1-0=0]|321",
        ("a_over_b_q", "1222/47=?"): "1-0*47=1,12-0*47=12,122-2*47[7*2=14+0=14 4*2=8+1=9 2-4-0+10=8 2-9-1+10=2 "
                                     "1-0-1=0],282-6*47[7*6=42+0=42 4*6=24+4=28 2-2-0=0 8-8-0=0 2-2-0=0]|6200",
        ("a_over_b_q", "0/7=?"): "0-0*7=0|0",
        ("x_plus_b_eq_c_q", "x+345=1023, x=?"): "x=c-b:3-5-0+10=8,2-4-1+10=7,0-3-1+10=6,1-0-1=0|8760",
        ("b_minus_x_eq_c_q", "12-x=-333, x=?"): "x=b-c:2+3+0=5+0=5,1+3+0=4+0=4,0+3+0=3+0=3|543",
        ("b_minus_x_eq_c_q", "345-x=12, x=?"): "x=b-c:5-2-0=3,4-1-0=3,3-0-0=3|333",
        ("x_times_b_eq_c_q", "x*7=2415, x=?"): "x=c/b:2-0*7=2,24-3*7[7*3=21+0=21 4-1-0=3 2-2-0=0],31-4*7[7*4=28+0=28 "
                                               "1-8-0+10=3 3-2-1=0],35-5*7[7*5=35+0=35 5-5-0=0 3-3-0=0]|5430",
        ("x_times_b_eq_c_q", "x*1=75, x=?"): "x=c/b:7-7*1[1*7=7+0=7 7-7-0=0],5-5*1[1*5=5+0=5 5-5-0=0]|57",
    }
    for (t, prompt), worked in examples.items():
        p = Problem(t, prompt, 0)
        assert worked_solution(p) == worked
    p = Problem("a_plus_b_q", "345+678=?", 1023)
    assert completion(p) == f"{THINK}5+8+0=13+0=13,4+7+1=11+1=12,3+6+1=9+1=10|3201{END_THINK}1023{END}"
    assert completion(p, worked=False) == f"1023{END}"


def column_texts(p):
    """The steps of p's worked solution without headers, block names and the run."""
    return [s.split(":")[-1] for s in worked_solution(p).split("|")[0].replace(";", ",").split(",")]


def test_steps_stay_bounded_as_numbers_grow():
    """A longer number means more steps, never longer ones: no step of a 9-digit problem is longer than the
    longest step of the 3-digit ones (a divisor and the shorter factor stay as long as in training)."""
    rng = random.Random(1)
    box = {t: ((1, 2), (1, 3)) if t == "a_over_b_q" else ((1, 3), (1, 3)) for t in TASK_TYPES}
    for t in TASK_TYPES:
        longest = max(len(s) for _ in range(300) for s in column_texts(make_problem(t, rng, box[t])))
        cells = length_cells(t, box[t], 9)
        for _ in range(100):
            p = make_problem(t, rng, tuple((d, d) for d in rng.choice(cells)))
            assert problem_length(p) == 9 and max(map(len, column_texts(p))) <= longest, (t, p)


def test_check_steps_catches_corrupted_steps():
    rng = random.Random(2)
    for t in TASK_TYPES:
        for _ in range(300):
            p = make_problem(t, rng, WIDE[t])
            text, answer = solve(p, slip=(0, 1))
            assert answer != p.answer and check_steps(p, text), (p, text)
    p = Problem("a_plus_b_q", "345+678=?", 1023)
    assert check_steps(p, "5+8+0=13+0=13,4+7+1=11+1=13,3+6+1=9+1=10|3201") == ["step 2 '4+7+1=11+1=13' is false"]
    assert check_steps(p, "5+8+0=13+0=13,4+7+0=11+0=11,3+6+1=9+1=10|3101") == ["step 2 '4+7+0=11+0=11' should be '4+7+1=11+1=12'"]
    assert check_steps(p, "5+8+0=13+0=13,4+7+1=11+1=12|32") == ["step 3 '|32' should be '3+6+1=9+1=10'"]
    assert check_steps(p, "5+8+0=13+0=13,4+7+1=11+1=12,3+6+1=9+1=10|3211") == ["step 4 '|3211' should be '|3201'"]
    assert check_steps(p, "5+8+0=13+0=13;4+7+1=11+1=12;3+6+1=9+1=10|3201")   # right steps, wrong separators
    d = Problem("a_over_b_q", "738/6=?", 123)
    right = ",13-2*6[6*2=12+0=12 3-2-0=1 1-1-0=0],18-3*6[6*3=18+0=18 8-8-0=0 1-1-0=0]|321"
    assert check_steps(d, "7-0*6=7,73-1*6[6*1=6+0=6 3-6-0+10=7 7-0-1=6]|31") == [
        "step 1 '7-0*6=7' is false", "step 2 '73-1*6[6*1=6+0=6 3-6-0+10=7 7-0-1=6]' is false"]   # remainders >= 6
    assert check_steps(d, "7-2*6[6*2=12+0=12 7-2-0=5]" + right) == ["step 1 '7-2*6[6*2=12+0=12 7-2-0=5]' is false"]
    assert check_steps(d, "7-1*6[6*1=6+0=6 7-6-0=2]" + right) == ["step 1 '7-1*6[6*1=6+0=6 7-6-0=2]' is false"]
    assert check_steps(d, "7-1*6[6*1=6+0=6 7-6-0=1]" + right) == []
    assert check_steps(Problem("a_minus_b_q", "808-814=?", -6), "8=8,0>1:") == ["step 2 '0>1:' is false"]
    m = Problem("a_times_b_q", "45*7=?", 315)                  # every link of a multiplication step's chain
    assert check_steps(m, "*7:5*7+0+0=35+0=35,4*7+0+3=27+3=31|513") == ["step 3 '4*7+0+3=27+3=31' is false"]
    assert check_steps(m, "*7:5*7+0+0=35+0=35,4*7+0+3=28+4=31|513") == ["step 3 '4*7+0+3=28+4=31' is false"]
    assert check_steps(m, "*7:5*7+0+0=35+0=35,4*7+0+3=28+3=30|503") == ["step 3 '4*7+0+3=28+3=30' is false"]
    assert check_steps(m, "*7:5*7+0+0=35+0=35,4*7+0+3=28+0+3=31|513") == [
        "step 3 '4*7+0+3=28+0+3=31' should be '4*7+0+3=28+3=31'"]


def test_make_problem_draws_digit_counts_uniformly():
    rng = random.Random(3)
    problems = [make_problem("a_over_b_q", rng, ((1, 1), (1, 3))) for _ in range(3000)]
    assert all(1 <= p.operands[1] <= 9 and 0 <= p.answer <= 999 for p in problems)
    assert {0, 1} <= {p.operands[1] for p in problems} | {p.answer for p in problems}   # a/1 and 0/b occur
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
    with pytest.raises(SystemExit, match="a_over_b_q .* has only 90 distinct problems"):
        sample_problems(digits, 91, random.Random(6))   # divisors 1-9, quotients 0-9
    with pytest.raises(SystemExit, match="found only 60 of 61"):
        sample_problems({"a_plus_b_q": ((1, 1), (1, 1))}, 61, random.Random(7), exclude={p.prompt for p in first})
    capped = sample_problems({"a_plus_b_q": ((1, 1), (1, 3))}, 300, random.Random(8), max_cell_share=0.2)
    assert sum(p.answer < 19 and len(p.prompt) == 5 for p in capped) == 20   # 20% of the 100 1+1-digit sums


def test_uniform_problems_follow_the_numbers_not_the_digit_counts():
    rng = random.Random(10)
    problems = [uniform_problem("a_minus_b_q", rng, ((1, 3), (1, 3))) for _ in range(3000)]
    assert 0.78 < sum(p.cell == (3, 3) for p in problems) / 3000 < 0.84        # 900 of 1000 numbers have 3 digits
    drawn = [make_problem("a_minus_b_q", rng, ((1, 3), (1, 3))) for _ in range(3000)]
    assert 0.08 < sum(p.cell == (3, 3) for p in drawn) / 3000 < 0.14           # a digit count first: 1 in 9


def test_corner_problems():
    rng = random.Random(11)
    for _ in range(500):
        p = corner_problem("a_minus_b_q", rng, ((1, 3), (1, 3)))
        a, b = map(str, p.operands)
        assert len(a) == len(b) and (len(a) == 1 or a[0] == b[0]), p
        q = corner_problem("x_plus_b_eq_c_q", rng, ((1, 3), (1, 3)))
        x, (b, c) = q.answer, q.operands
        assert len(str(c)) == len(str(x)) + 1 and x + b == c and q.cell[1] <= q.cell[0], q
    assert corner_problem("a_plus_b_q", rng, ((1, 3), (1, 3))) is None
    shared = lambda ps: sum(len(set(map(len, map(str, p.operands)))) == 1 and len(str(p.operands[0])) > 1
                            and str(p.operands[0])[0] == str(p.operands[1])[0] for p in ps)
    assert shared(sample_problems({"a_minus_b_q": ((1, 3), (1, 3))}, 2000, rng, corner_share=0.5)) > 600
    assert shared(sample_problems({"a_minus_b_q": ((1, 3), (1, 3))}, 2000, rng)) < 150


def test_length_cells_keep_divisors_and_short_factors_in_the_box():
    box = ((1, 2), (1, 3))
    assert length_cells("a_over_b_q", box, 5) == [(1, 5), (2, 5)]
    assert length_cells("x_times_b_eq_c_q", ((1, 3), (1, 3)), 5) == [(5, 1), (5, 2), (5, 3)]
    assert sorted(length_cells("a_times_b_q", ((1, 3), (1, 3)), 4)) == [(1, 4), (2, 4), (3, 4), (4, 1), (4, 2), (4, 3)]
    assert len(length_cells("a_plus_b_q", ((1, 3), (1, 3)), 4)) == 7     # (4, 1..4) and (1..3, 4)
    assert length_cells("a_plus_b_q", ((1, 3), (1, 3)), 2) == [(1, 2), (2, 1), (2, 2)]
    rng = random.Random(12)
    problems = length_problems({"a_over_b_q": box, "a_plus_b_q": ((1, 3), (1, 3))}, 6, 50, rng)
    assert len(problems) == 100 and all(problem_length(p) == 6 for p in problems)
    assert all(p.cell[0] <= 2 for p in problems if p.type == "a_over_b_q")
    short = length_problems({"a_plus_b_q": ((1, 3), (1, 3))}, 1, 50, rng, max_cell_share=0.2)
    assert len(short) == 20                                               # a fifth of the 100 1+1-digit sums


def test_outside_box_and_normalize_prompt():
    box = {"a_times_b_q": ((1, 3), (1, 3)), "a_over_b_q": ((1, 2), (1, 3))}
    assert outside_box(parse_prompt("345*678=?"), box) is None
    assert outside_box(parse_prompt("1234*5=?"), box) == "first operand has 4 digits (trained on up to 3)"
    assert outside_box(parse_prompt("738/123=?"), box).startswith("divisor has 3 digits")
    assert outside_box(parse_prompt("1+2=?"), box) == "a_plus_b_q was not in the training data"
    assert normalize_prompt(" 3 + 4 = ? ") == "3+4=?" and normalize_prompt("x +5= 12 ,x = ?") == "x+5=12, x=?"


def test_problem_from_row():
    p = Problem("b_minus_x_eq_c_q", "12-x=-333, x=?", 345)
    assert problem_from_row({"Q": p.prompt, "A": "345", "type": p.type}) == p
    assert p.operands == (12, -333)
    with pytest.raises(SystemExit, match="unknown"):
        problem_from_row({"Q": "1+1=?", "A": "2", "type": "add"})
    with pytest.raises(SystemExit, match="not a a_times_b_q prompt"):
        problem_from_row({"Q": "1+1=?", "A": "2", "type": "a_times_b_q"})


@pytest.mark.parametrize("text, expected", [
    (f"{THINK}5+8+0=13+0=13{END_THINK}13{END}", "13"),
    (f"{THINK}1+2+0=3+0=3{END_THINK}-333{END}", "-333"),
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
    assert classify_error(p, canonical("5+8+0=13+0=13,4+7+0=11+0=11,3+6+1=9+1=10|3101", 1013)) == "carry"
    assert classify_error(p, canonical(w, 1500)) == "other"
    q = Problem("a_minus_b_q", "345-178=?", 167)
    assert classify_error(q, canonical("3>1:5-8-0+10=7,4-7-0=7,3-1-0=2|772", 277)) == "carry"   # borrow dropped
    assert classify_error(q, f"523{END}") == "wrong_operation"
