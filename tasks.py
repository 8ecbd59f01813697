"""
The math tasks: the one place that defines them, used by data generation,
evaluation and RL alike (prompts, sampling, worked solutions, answer extraction, checks).

Seven task types. Each is generated from two operands whose digit counts are
configured as ((lo, hi), (lo, hi)), in this order:

    type               prompt          generated operands      answer
    a_plus_b_q         a+b=?           a, b                    a+b
    a_minus_b_q        a-b=?           a, b                    a-b (may be < 0)
    a_times_b_q        a*b=?           a, b                    a*b
    a_over_b_q         a/b=?           divisor b, quotient q   q  (a = b*q)
    x_plus_b_eq_c_q    x+b=c, x=?      x, b                    x
    b_minus_x_eq_c_q   b-x=c, x=?      b, x                    x  (c may be < 0)
    x_times_b_eq_c_q   x*b=c, x=?      x, b                    x

Numbers are >= 0, except that a divisor (b in a/b and in x*b=c) is >= 1, so that
every division is exact (0 and 1 are operands like any other: 0*7, 75/1, 0/7, x*1=75).
A digit count is drawn uniformly first and then a number with that many digits
(1-digit numbers are 0-9), so that short numbers are as common as long ones; a
share of the problems are drawn from the hard corners on purpose (corner_problem).

A completion is <think>worked solution</think>answer<|end|>. The worked solution
(worked.py) is a list of true equations, one column a step, ending with the
result's digits units first after a '|'; the answer reads them backwards:

    345+678=?     5+8+0=13+0=13,4+7+1=11+1=12,...|3201            -> 1023
    808-814=?     8=8,0<1:4-8-0+10=6,1-0-1=0,8-8-0=0|600          -> -6
    345*67=?      *7:5*7+0+0=35+0=35,...;*6:...|51132              -> 23115
    738/6=?       7-1*6[6*1=6+0=6 7-6-0=1],13-2*6[...],18-3*6[...]|321     -> 123
    x+345=1023    x=c-b: then the subtraction steps of 1023-345
    12-x=-333     x=b-c: then the addition steps of 12+333  (subtraction when c >= 0)
    x*7=2415      x=c/b: then the division steps of 2415/7
"""
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from itertools import product

from tokenizer import END, END_THINK, THINK
from worked import (add_steps, column_and_carry, div_steps, is_true, minus_steps, mul_steps, run_value, split_steps,
                    sub_steps)

TASK_TYPES = ("a_plus_b_q", "a_minus_b_q", "a_times_b_q", "a_over_b_q",
              "x_plus_b_eq_c_q", "b_minus_x_eq_c_q", "x_times_b_eq_c_q")

WORD_TYPES = ("story", "gsm8k")   # word problems (words.py, gsm8k.py): free text, an integer answer, no operands

_PROMPT_RE = {
    "a_plus_b_q": re.compile(r"(\d+)\+(\d+)=\?"),
    "a_minus_b_q": re.compile(r"(\d+)-(\d+)=\?"),
    "a_times_b_q": re.compile(r"(\d+)\*(\d+)=\?"),
    "a_over_b_q": re.compile(r"(\d+)/(\d+)=\?"),
    "x_plus_b_eq_c_q": re.compile(r"x\+(\d+)=(\d+), x=\?"),
    "b_minus_x_eq_c_q": re.compile(r"(\d+)-x=(-?\d+), x=\?"),
    "x_times_b_eq_c_q": re.compile(r"x\*(\d+)=(\d+), x=\?"),
}
_MIN_VALUE = {"a_over_b_q": (1, 0), "x_times_b_eq_c_q": (0, 1)}  # smallest generated operands; others (0, 0)
_PLAIN_OP = {"a_plus_b_q": "+", "a_minus_b_q": "-", "a_times_b_q": "*", "a_over_b_q": "/"}


@dataclass(frozen=True)
class Problem:
    type: str
    prompt: str
    answer: int

    @property
    def operands(self):
        """The two numbers in the prompt, in prompt order: (a, b), or (b, c) for equations."""
        return tuple(int(g) for g in _PROMPT_RE[self.type].fullmatch(self.prompt).groups())

    @property
    def cell(self):
        """The digit counts of the two generated operands (the table above), e.g. (3, 3) for 345-178=?."""
        x, y = self.operands
        generated = {"a_over_b_q": (y, self.answer), "x_plus_b_eq_c_q": (self.answer, x),
                     "b_minus_x_eq_c_q": (x, self.answer), "x_times_b_eq_c_q": (self.answer, x)}.get(self.type, (x, y))
        return tuple(len(str(n)) for n in generated)


def problem_from_row(row, where="row"):
    """A Problem from a JSONL row with Q (prompt), A (answer as a string) and type; errors start with where
    (the file and line)."""
    task_type, prompt = row["type"], row["Q"]
    if task_type not in TASK_TYPES + WORD_TYPES:
        raise SystemExit(f"{where}: type {task_type!r} is unknown; allowed: {', '.join(TASK_TYPES + WORD_TYPES)}")
    if task_type in WORD_TYPES and not (isinstance(prompt, str) and prompt.strip()):
        raise SystemExit(f"{where}: Q of a {task_type} row must be its non-empty question")
    if task_type in TASK_TYPES and not (isinstance(prompt, str) and _PROMPT_RE[task_type].fullmatch(prompt)):
        raise SystemExit(f"{where}: Q {prompt!r} is not a {task_type} prompt")
    try:
        return Problem(task_type, prompt, int(row["A"]))
    except (TypeError, ValueError):
        raise SystemExit(f"{where}: A {row['A']!r} (Q {prompt!r}) must be an integer")


def normalize_prompt(text):
    """A typed-in prompt in the canonical form: no spaces, except the one in ', x=?' ("3 + 4 = ?" -> "3+4=?")."""
    return re.sub(r"\s+", "", text).replace(",x=?", ", x=?")


def not_a_task(prompt):
    """Why a prompt that parse_prompt rejects is none of the task forms, in a few words."""
    if "." in prompt:
        return "a decimal number: not one of the task forms (whole numbers only)"
    if re.search(r"(^|[-+*/=])-\d", prompt):
        return "a negative operand: not one of the task forms (numbers >= 0; only b-x=c may have c < 0)"
    task_type = prompt_type(prompt)
    if task_type in ("a_over_b_q", "x_times_b_eq_c_q"):
        return "no single whole-number answer: the division is not exact (or divides by 0)"
    return "not one of the task forms: a+b=?, a-b=?, a*b=?, a/b=?, x+b=c, x=?, b-x=c, x=?, x*b=c, x=?"


def prompt_type(prompt):
    """The task type whose form the prompt has, or None."""
    return next((t for t, pattern in _PROMPT_RE.items() if pattern.fullmatch(prompt)), None)


def parse_prompt(prompt):
    """The Problem a typed-in prompt states, its answer computed; None when the prompt is none of the
    task forms or has no integer answer (7/2=?). For eval.py's prompt files and sample.py."""
    for task_type, pattern in _PROMPT_RE.items():
        if pattern.fullmatch(prompt):
            op, left, right, _ = _plan(Problem(task_type, prompt, 0))
            answer = _apply(op, left, right)
            return None if answer is None else Problem(task_type, prompt, answer)
    return None

# -----------------------------------------------------------------------------
# sampling


def _build(task_type, u, v):
    """The problem made from the generated operands u, v (see the table above)."""
    if task_type in _PLAIN_OP:
        a, b = (u * v, u) if task_type == "a_over_b_q" else (u, v)   # u divisor, v quotient
        op = _PLAIN_OP[task_type]
        return Problem(task_type, f"{a}{op}{b}=?", _apply(op, a, b))
    if task_type == "x_plus_b_eq_c_q":
        return Problem(task_type, f"x+{v}={u + v}, x=?", u)
    if task_type == "b_minus_x_eq_c_q":
        return Problem(task_type, f"{u}-x={u - v}, x=?", v)
    return Problem(task_type, f"x*{v}={u * v}, x=?", u)


def _number_range(n_digits, min_value):
    """(lo, hi) of the numbers with n_digits digits that are >= min_value."""
    return max(min_value, 10 ** (n_digits - 1) if n_digits > 1 else 0), 10 ** n_digits - 1


def digit_cells(task_type, digits):
    """Every combination of digit counts of the two generated operands (a cell, e.g. (3, 3): two
    3-digit numbers), with how many problems it holds."""
    mins = _MIN_VALUE.get(task_type, (0, 0))
    for cell in product(*(range(lo, hi + 1) for lo, hi in digits)):
        ranges = [_number_range(d, m) for d, m in zip(cell, mins)]
        yield cell, math.prod(hi - lo + 1 for lo, hi in ranges)


def make_problem(task_type, rng, digits):
    """One random problem; digits = ((lo, hi), (lo, hi)) for the two generated operands."""
    mins = _MIN_VALUE.get(task_type, (0, 0))
    u, v = (rng.randint(*_number_range(rng.randint(lo, hi), m)) for (lo, hi), m in zip(digits, mins))
    return _build(task_type, u, v)


def uniform_problem(task_type, rng, digits):
    """One random problem whose generated operands are uniform over all the numbers digits allow (so that
    most of them have the most digits), as a user who types any numbers would draw them."""
    mins = _MIN_VALUE.get(task_type, (0, 0))
    u, v = (rng.randint(_number_range(lo, m)[0], 10 ** hi - 1) for (lo, hi), m in zip(digits, mins))
    return _build(task_type, u, v)


def corner_problem(task_type, rng, digits):
    """A problem from a hard corner of its type, or None for a type without one: a-b with both numbers as
    long and sharing their leading digits (808-814: the comparison is decided late), and x+b=c where c has
    a digit more than x (x = c-b borrows through to a top digit that x does not have)."""
    (lo0, hi0), (lo1, hi1) = digits
    if task_type == "a_minus_b_q" and max(lo0, lo1) <= min(hi0, hi1):
        n = rng.randint(max(lo0, lo1), min(hi0, hi1))
        a = str(rng.randint(*_number_range(n, 0)))
        shared = rng.randint(1, n) if n > 1 else 0
        return _build(task_type, int(a), int(a[:shared] + "".join(rng.choice("0123456789") for _ in a[shared:])))
    if task_type == "x_plus_b_eq_c_q" and lo1 <= hi0:
        nx = rng.randint(max(lo0, lo1), hi0)
        b = rng.randint(max(1, _number_range(lo1, 0)[0]), 10 ** min(hi1, nx) - 1)
        return _build(task_type, rng.randint(max(_number_range(nx, 0)[0], 10 ** nx - b), 10 ** nx - 1), b)
    return None


# which generated operand grows with the length of a problem: a divisor or a multiplier stays as long as
# in training (the divisor is written whole in every division step); the other types grow both
_GROWS = {"a_over_b_q": (False, True), "x_times_b_eq_c_q": (True, False)}


def problem_length(problem):
    """The length of a problem: the digits of its longest operand that grows (_GROWS), e.g. the quotient's
    digits for a/b. Accuracy by length is measured on this."""
    grows = _GROWS.get(problem.type, (True, True))
    return max(d for d, g in zip(problem.cell, grows) if g)


def box_longest(task_digits):
    """The most digits of any operand the box holds ({type: ((lo, hi), (lo, hi))}): lengths past the box
    count from there."""
    return max(hi for digits in task_digits.values() for _, hi in digits)


def length_cells(task_type, digits, length):
    """The digit-count cells of problems of this length: the growing operands up to `length` digits, one of
    them exactly `length`; a divisor stays in its trained digits, and so does the shorter factor of a*b."""
    grows = _GROWS.get(task_type, (True, True))
    ranges = [range(lo, length + 1) if g else range(lo, hi + 1) for (lo, hi), g in zip(digits, grows)]
    cells = [c for c in product(*ranges) if max(d for d, g in zip(c, grows) if g) == length]
    if task_type == "a_times_b_q":
        cells = [c for c in cells if min(c) <= min(hi for _, hi in digits)]
    return cells


def _distinct(draw, n, exclude, caps, what, at_most=False):
    """n distinct problems from draw(), none with a prompt in exclude, at most caps[cell] of each digit-count
    cell; with at_most, as many as can be found up to n (small cells hold few problems)."""
    problems, taken, counts = [], set(), {}
    for _ in range(100 * n + 10_000):   # enough unless exclude or the caps leave too few
        if len(problems) == n:
            break
        p = draw()
        if p is None or p.prompt in taken or p.prompt in exclude or counts.get(p.cell, 0) >= caps[p.cell]:
            continue
        taken.add(p.prompt)
        counts[p.cell] = counts.get(p.cell, 0) + 1
        problems.append(p)
    if len(problems) < n and not at_most:
        raise SystemExit(f"{what}: found only {len(problems)} of {n} distinct problems outside the held-out ones: "
                         "lower n_*_per_type or widen the digits")
    return problems


def _caps(task_type, digits, share, cells=None):
    sizes = dict(digit_cells(task_type, digits))
    return {cell: max(1, int(share * sizes[cell])) for cell in (cells or sizes)}


def sample_problems(task_digits, n_per_type, rng, exclude=frozenset(), max_cell_share=1.0, corner_share=0.0,
                    uniform=False):
    """n_per_type distinct problems of every type in task_digits, none with a prompt in exclude: a digit
    count first, then a number with that many digits, or (uniform) numbers uniform over the whole range;
    a corner_share of them from corner_problem. max_cell_share < 1 caps the share of each digit-count cell
    (e.g. all 1-digit + 1-digit sums) that this call takes, so held-out splits do not swallow small cells."""
    problems = []
    for task_type in (t for t in TASK_TYPES if t in task_digits):
        digits = task_digits[task_type]
        caps = _caps(task_type, digits, max_cell_share)
        if n_per_type > sum(caps.values()):
            raise SystemExit(f"{task_type} with digits {digits} has only {sum(caps.values())} distinct problems"
                             f"{' in reach' if max_cell_share < 1 else ''}, {n_per_type} asked for: "
                             "lower n_*_per_type or widen the digits")

        def draw():
            if corner_share and rng.random() < corner_share:
                return corner_problem(task_type, rng, digits)
            return (uniform_problem if uniform else make_problem)(task_type, rng, digits)
        problems += _distinct(draw, n_per_type, exclude, caps, f"{task_type} with digits {digits}")
    return problems


def length_problems(task_digits, length, n_per_type, rng, exclude=frozenset(), max_cell_share=1.0):
    """Up to n_per_type distinct problems of every type whose length (problem_length) is `length`: a cell of
    length_cells first, then numbers with its digit counts. Short lengths hold fewer problems (there are
    100 sums of two 1-digit numbers), so a type may get fewer, and none below its shortest operands; the
    counts are in the data's meta.json."""
    problems = []
    for task_type in (t for t in TASK_TYPES if t in task_digits):
        cells = length_cells(task_type, task_digits[task_type], length)
        if not cells:   # a box of 2-3 digit operands has no problem of length 1
            continue
        wide = tuple((min(c[k] for c in cells), max(c[k] for c in cells)) for k in range(2))
        caps = _caps(task_type, wide, max_cell_share, cells)
        draw = lambda: make_problem(task_type, rng, tuple((d, d) for d in rng.choice(cells)))
        problems += _distinct(draw, n_per_type, exclude, caps, f"{task_type} of length {length}", at_most=True)
    return problems


def outside_box(problem, task_digits):
    """Why a problem lies outside the digit box a model trained on (task_digits, as the data's meta.json
    records it), or None: an operand with more digits than training ever showed."""
    digits = task_digits.get(problem.type)
    if digits is None:
        return f"{problem.type} was not in the training data"
    names = {"a_over_b_q": ("divisor", "quotient")}.get(problem.type, ("first operand", "second operand"))
    longer = [f"{name} has {d} digits (trained on up to {hi})"
              for d, (_, hi), name in zip(problem.cell, digits, names) if d > hi]
    return "; ".join(longer) or None


def validate_task_digits(task_digits, key_name):
    """Exit with a one-line message if task_digits is not {task_type: ((lo, hi), (lo, hi))} with 1 <= lo <= hi.
    (Division is built from divisor and quotient, so any valid digit counts give exact problems.)"""
    if not isinstance(task_digits, dict) or not task_digits:
        raise SystemExit(f"{key_name} must be a non-empty dict {{task_type: ((lo, hi), (lo, hi))}}, "
                         f"got {task_digits!r}")
    for task_type, digits in task_digits.items():
        if task_type not in TASK_TYPES:
            raise SystemExit(f"{key_name}: unknown task type {task_type!r}; allowed: {', '.join(TASK_TYPES)}")
        ok = (isinstance(digits, (tuple, list)) and len(digits) == 2
              and all(isinstance(r, (tuple, list)) and len(r) == 2 for r in digits)
              and all(type(d) is int for r in digits for d in r))
        if not ok:
            raise SystemExit(f"{key_name}[{task_type!r}] must be ((lo, hi), (lo, hi)) digit counts of its two "
                             f"operands, got {digits!r}")
        for (lo, hi), name in zip(digits, ("first", "second")):
            if lo < 1 or lo > hi:
                raise SystemExit(f"{key_name}[{task_type!r}]: the {name} operand's digits {(lo, hi)} must have "
                                 "1 <= lo <= hi")


# -----------------------------------------------------------------------------
# worked solutions: the steps are written by worked.py; here, which steps a problem needs


def _apply(op, a, b):
    """a op b, or None for a division that is not exact."""
    if op == "/":
        return a // b if b and a % b == 0 else None
    return {"+": a + b, "-": a - b, "*": a * b}[op]


def _plan(problem):
    """(op, l, r, is_equation): the operation the worked solution carries out, and on what."""
    u, v = problem.operands
    if problem.type in _PLAIN_OP:
        return _PLAIN_OP[problem.type], u, v, False
    if problem.type == "x_plus_b_eq_c_q":          # x = c - b
        return "-", v, u, True
    if problem.type == "b_minus_x_eq_c_q":         # x = b - c, worked as b + |c| when c < 0
        return ("-", u, v, True) if v >= 0 else ("+", u, -v, True)
    return "/", v, u, True                         # x = c / b


# an equation's worked solution starts by saying what it computes, in the prompt's letters
_EQUATION_HEADER = {"x_plus_b_eq_c_q": ("c", "-", "b"), "b_minus_x_eq_c_q": ("b", "-", "c"),
                    "x_times_b_eq_c_q": ("c", "/", "b")}
_WRITERS = {"+": add_steps, "-": sub_steps, "*": mul_steps, "/": div_steps}


def solve(problem, op=None, slip=None):
    """(worked solution, the answer it arrives at). op replaces the right operation by another on the same
    numbers (wrong-operation negatives); slip corrupts one column step (worked.py)."""
    right_op, l, r, is_equation = _plan(problem)
    op = op or right_op
    sign, header = 1, ""
    if op == "-" and not (is_equation and l >= r):
        text, run, sign = minus_steps(l, r, slip)    # compare first: the result may be negative
    else:
        text, run = _WRITERS[op](l, r, slip)
    if is_equation:
        left, symbol, right = _EQUATION_HEADER[problem.type]
        header = f"x={left}{symbol if op == right_op else op}{right}:"
    return f"{header}{text}|{''.join(map(str, run))}", sign * run_value(run)


def other_answers(problem):
    """{op: answer} of the other operations on the numbers the worked solution uses."""
    right_op, l, r, _ = _plan(problem)
    answers = {op: _apply(op, l, r) for op in _WRITERS if op != right_op}
    return {op: a for op, a in answers.items() if a is not None}


def worked_solution(problem):
    """The text between <think> and </think>."""
    return solve(problem)[0]


def column_steps(worked_text):
    """The column steps of a worked solution (not headers, comparisons or the run): what slip= indexes."""
    return [s for s in split_steps(worked_text) if column_and_carry(s) is not None]


def format_completion(answer, worked_text=None):
    return (f"{THINK}{worked_text}{END_THINK}" if worked_text is not None else "") + f"{answer}{END}"


def completion(problem, worked=True):
    return format_completion(problem.answer, worked_solution(problem) if worked else None)

# -----------------------------------------------------------------------------
# answers and checks

_NUM = r"(?:(?<![\w)])-)?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"   # -12, 1,023, 18.0; not the - of 3-4
_CANONICAL_RE = re.compile(rf"(?:{re.escape(THINK)}(?:(?!{re.escape(END_THINK)}).)*{re.escape(END_THINK)})?"
                           rf"(?:-?[1-9]\d*|0){re.escape(END)}", re.S)
_FIRST_FORMS = [re.compile(rf"{re.escape(END_THINK)}({_NUM}){re.escape(END)}"),    # canonical
                re.compile(rf"^\s*({_NUM}){re.escape(END)}"),                       # canonical, no worked solution
                re.compile(rf"####\s*\$?({_NUM})"),                                 # GSM8K: '#### 72', '#### $5'
                re.compile(rf"the answer is\s*:?\s*\$?({_NUM})", re.I)]


def extract_answer(text):
    """The answer as written (a string), or None: the canonical forms first, then '#### N',
    'The answer is N', the last number of the sentence after 'Therefore', the last number."""
    for pattern in _FIRST_FORMS:
        m = pattern.search(text)
        if m:
            return m.group(1)
    therefore = re.search(r"therefore(.*?)(?:\.\s|\.$|\n|$)", text, re.I | re.S)
    numbers = re.findall(_NUM, therefore.group(1) if therefore else "") or re.findall(_NUM, text)
    return numbers[-1] if numbers else None


def has_canonical_format(text):
    """The completion starts with [<think>...</think>]N<|end|>, N an integer written plainly (no 007, -0, 1,023)."""
    return _CANONICAL_RE.match(text) is not None


def _to_decimal(s):
    return Decimal(s.replace(",", ""))   # s matched _NUM, so it is a valid number


def is_correct(text, answer):
    """Numerical comparison, so -0, 007, 18.0 and 1,023 count as the numbers they are."""
    pred = extract_answer(text)
    return pred is not None and _to_decimal(pred) == Decimal(int(answer))


def is_claim(step):
    """A step that states something true or false: a column step or a comparison (not a header or the run)."""
    return column_and_carry(step) is not None or re.fullmatch(r"\d[<=>]\d:?", step) is not None


def check_steps(problem, worked_text):
    """Errors in a worked solution, [] if it is right: every step must be true (worked.is_true), and the
    steps must be the canonical ones (a true step with a dropped carry is still wrong)."""
    reference = worked_solution(problem)
    got, want = split_steps(worked_text), split_steps(reference)
    errors = [f"step {i + 1} {s!r} is false" for i, s in enumerate(got) if is_claim(s) and not is_true(s)]
    if errors:
        return errors
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            return [f"step {i + 1} {g!r} should be {w!r}"]   # later steps follow from this one
    if len(got) != len(want):
        return [f"{len(got)} steps where {len(want)} are needed"]
    return [] if worked_text == reference else ["the steps are right but not joined as in the canonical form"]


def _carry_error(problem, worked_text):
    """True if the first step that departs from the canonical one has the right digits but the wrong carry."""
    for g, w in zip(split_steps(worked_text), split_steps(worked_solution(problem))):
        if g != w:
            gc, wc = column_and_carry(g), column_and_carry(w)
            return gc is not None and wc is not None and gc[0] == wc[0] and gc[1] != wc[1]
    return False


def classify_error(problem, completion_text):
    """One of: correct; format (no answer, or not canonical); wrong_operation (the answer of +, -, *
    or / on the same numbers); carry (the first wrong step dropped or invented a carry/borrow);
    off_by_one; off_by_ten (off by a power of ten); other. Checked in this order: causes before sizes."""
    pred = extract_answer(completion_text)
    if pred is None:
        return "format"
    if is_correct(completion_text, problem.answer):
        return "correct"
    if not has_canonical_format(completion_text):
        return "format"
    pred = int(_to_decimal(pred))   # canonical, so a plain integer
    if pred in other_answers(problem).values():
        return "wrong_operation"
    think = re.match(rf"{re.escape(THINK)}(.*?){re.escape(END_THINK)}", completion_text, re.S)
    if think and _carry_error(problem, think.group(1)):
        return "carry"
    miss = abs(pred - problem.answer)
    if miss == 1:
        return "off_by_one"
    if str(miss).strip("0") == "1":
        return "off_by_ten"
    return "other"
