"""
The math tasks: the one place that defines them, used by data generation,
evaluation and RL alike (prompts, worked solutions, answer extraction, checks).

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

Numbers are >= 0, except that a divisor (b in a/b and in x*b=c) is >= 2 and the
quotient of a/b is >= 1, so that every division is exact and not trivial.
A digit count is drawn uniformly first and then a number with that many digits
(1-digit numbers are 0-9), so that short numbers are as common as long ones.

A completion is <think>worked solution</think>answer<|end|>. The worked
solution is a list of true equations, one per column, least significant digit
first (division goes from the most significant digit, as by hand):

    345+678=?     5+8+0=13,4+7+1=12,3+6+1=10                      -> 1023
    345-178=?     5-8-0+10=7,4-7-1+10=6,3-1-1=1  (+10 = borrowed ten) -> 167
    345-678=?     -(678-345):8-5-0=3,7-4-0=3,6-3-0=3              -> -333
    345*7=?       5*7+0=35,4*7+3=31,3*7+3=24                      -> 2415
    345*67=?      345*7:...;345*6:...;2415+20700=23115            -> 23115
    738/6=?       7/6=1r1,13/6=2r1,18/6=3r0                       -> 123
    x+345=1023    x=1023-345: then the subtraction steps
    12-x=-333     x=12+333: then the addition steps  (x=345-12: when c >= 0)
    x*7=2415      x=2415/7: then the division steps
"""
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from itertools import product

from tokenizer import END, END_THINK, THINK

TASK_TYPES = ("a_plus_b_q", "a_minus_b_q", "a_times_b_q", "a_over_b_q",
              "x_plus_b_eq_c_q", "b_minus_x_eq_c_q", "x_times_b_eq_c_q")

_PROMPT_RE = {
    "a_plus_b_q": re.compile(r"(\d+)\+(\d+)=\?"),
    "a_minus_b_q": re.compile(r"(\d+)-(\d+)=\?"),
    "a_times_b_q": re.compile(r"(\d+)\*(\d+)=\?"),
    "a_over_b_q": re.compile(r"(\d+)/(\d+)=\?"),
    "x_plus_b_eq_c_q": re.compile(r"x\+(\d+)=(\d+), x=\?"),
    "b_minus_x_eq_c_q": re.compile(r"(\d+)-x=(-?\d+), x=\?"),
    "x_times_b_eq_c_q": re.compile(r"x\*(\d+)=(\d+), x=\?"),
}
_MIN_VALUE = {"a_over_b_q": (2, 1), "x_times_b_eq_c_q": (0, 2)}  # smallest generated operands; others (0, 0)
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
    if task_type not in TASK_TYPES:
        raise SystemExit(f"{where}: type {task_type!r} is unknown; allowed: {', '.join(TASK_TYPES)}")
    if not isinstance(prompt, str) or not _PROMPT_RE[task_type].fullmatch(prompt):
        raise SystemExit(f"{where}: Q {prompt!r} is not a {task_type} prompt")
    try:
        return Problem(task_type, prompt, int(row["A"]))
    except (TypeError, ValueError):
        raise SystemExit(f"{where}: A {row['A']!r} (Q {prompt!r}) must be an integer")


def normalize_prompt(text):
    """A typed-in prompt in the canonical form: no spaces, except the one in ', x=?' ("3 + 4 = ?" -> "3+4=?")."""
    return re.sub(r"\s+", "", text).replace(",x=?", ", x=?")


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


def sample_problems(task_digits, n_per_type, rng, exclude=frozenset(), max_cell_share=1.0):
    """n_per_type distinct problems of every type in task_digits, none with a prompt in exclude.
    max_cell_share < 1 caps the share of each digit-count cell (e.g. all 1-digit + 1-digit sums)
    that this call takes, so that held-out splits do not swallow the small cells whole."""
    problems = []
    for task_type in (t for t in TASK_TYPES if t in task_digits):
        digits = task_digits[task_type]
        caps = {cell: max(1, int(max_cell_share * size)) for cell, size in digit_cells(task_type, digits)}
        if n_per_type > sum(caps.values()):
            raise SystemExit(f"{task_type} with digits {digits} has only {sum(caps.values())} distinct problems"
                             f"{' in reach' if max_cell_share < 1 else ''}, {n_per_type} asked for: "
                             "lower n_*_per_type or widen the digits")
        taken, counts = set(), dict.fromkeys(caps, 0)
        for _ in range(100 * n_per_type + 10_000):   # enough unless exclude leaves too few
            if len(taken) == n_per_type:
                break
            cell = tuple(rng.randint(lo, hi) for lo, hi in digits)
            if counts[cell] >= caps[cell]:
                continue
            p = make_problem(task_type, rng, tuple((d, d) for d in cell))
            if p.prompt not in taken and p.prompt not in exclude:
                taken.add(p.prompt)
                counts[cell] += 1
                problems.append(p)
        if len(taken) < n_per_type:
            raise SystemExit(f"{task_type} with digits {digits}: found only {len(taken)} of {n_per_type} distinct "
                             "problems outside the held-out ones: lower n_*_per_type or widen the digits")
    return problems


def ood_task_digits(task_digits, extra):
    """Longer operands, same format: the longer operand gets hi+1..hi+extra digits (so every OOD problem is
    longer than any training problem) and the other one up to hi+extra, except a one-digit multiplier or
    divisor, which stays one digit: a two-digit one would need a step format the model never saw."""
    def longer(digits):
        (lo0, hi0), (lo1, hi1) = digits
        grow = lambda lo, hi: (lo, hi) if hi == 1 else (lo, hi + extra)
        if hi0 >= hi1:
            return (hi0 + 1, hi0 + extra), grow(lo1, hi1)
        return grow(lo0, hi0), (hi1 + 1, hi1 + extra)
    return {t: longer(digits) for t, digits in task_digits.items()}


def validate_task_digits(task_digits, key_name):
    """Exit with a one-line message if task_digits is not {task_type: ((lo, hi), (lo, hi))} with 1 <= lo <= hi.
    (Division is built from divisor and quotient, so any valid digit counts give exact, non-trivial problems.)"""
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
# worked solutions. Each step writer returns (text, value). slip=(step, delta) adds delta to the
# result of one step and carries the error on, which is how corrupted-step negatives are made.


def _slipped(value, i, slip):
    if slip is None or slip[0] != i:
        return value
    return value + slip[1] if value + slip[1] >= 0 else value + 1


def _digits(n):
    return [int(c) for c in reversed(str(n))]   # least significant first


def _add_steps(a, b, slip=None):
    da, db = _digits(a), _digits(b)
    steps, carry, total = [], 0, 0
    for i in range(max(len(da), len(db))):
        x, y = (da[i] if i < len(da) else 0), (db[i] if i < len(db) else 0)
        s = _slipped(x + y + carry, i, slip)
        steps.append(f"{x}+{y}+{carry}={s}")
        total += s % 10 * 10 ** i
        carry = s // 10
    return ",".join(steps), total + carry * 10 ** len(steps)


def _sub_steps(a, b, slip=None):
    # needs a >= b. A column that borrows adds the borrowed ten after its digits (5-8-0+10=7): written
    # first (15-8-0=7), the model would have to decide the borrow before writing the digits it depends
    # on. Measured on the small pipeline: a-b 95.2% -> 97.5%, x+b=c 97.6% -> 100% after SFT
    db = _digits(b)
    steps, borrow, total = [], 0, 0
    for i, x in enumerate(_digits(a)):
        y = db[i] if i < len(db) else 0
        need = int(x - y - borrow < 0)
        d = _slipped(10 * need + x - y - borrow, i, slip)
        steps.append(f"{x}-{y}-{borrow}{'+10' * need}={d}")
        total += d * 10 ** i
        borrow = need
    return ",".join(steps), total


def _minus_steps(a, b, slip=None):
    if a >= b:
        return _sub_steps(a, b, slip)
    text, value = _sub_steps(b, a, slip)
    return f"-({b}-{a}):{text}", -value


def _mul_digit_steps(a, d, slip=None):
    steps, carry, total = [], 0, 0
    for i, x in enumerate(_digits(a)):
        p = _slipped(x * d + carry, i, slip)
        steps.append(f"{x}*{d}+{carry}={p}")
        total += p % 10 * 10 ** i
        carry = p // 10
    return ",".join(steps), total + carry * 10 ** len(steps)


def _mul_steps(a, b, slip=None):
    if b < 10:
        return _mul_digit_steps(a, b, slip)
    # one block per digit of b, then the sum of the shifted partial products
    n, blocks, partials = len(str(a)), [], []
    for j, d in enumerate(_digits(b)):
        text, p = _mul_digit_steps(a, d, slip and (slip[0] - j * n, slip[1]))
        blocks.append(f"{a}*{d}:{text}")
        partials.append(p * 10 ** j)
    total = _slipped(sum(partials), n * len(partials), slip)
    return ";".join(blocks) + ";" + "+".join(map(str, partials)) + f"={total}", total


def _div_steps(a, b, slip=None):
    # exact division, most significant digit first, with the running remainder
    steps, r, quotient = [], 0, 0
    for i, c in enumerate(str(a)):
        cur = 10 * r + int(c)
        q, r = divmod(cur, b)
        q = _slipped(q, i, slip)
        steps.append(f"{cur}/{b}={q}r{r}")
        quotient = 10 * quotient + q
    return ",".join(steps), quotient


_STEP_WRITERS = {"+": _add_steps, "-": _minus_steps, "*": _mul_steps, "/": _div_steps}


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
    if problem.type == "b_minus_x_eq_c_q":         # x = b - c, written b + |c| when c < 0
        return ("-", u, v, True) if v >= 0 else ("+", u, -v, True)
    return "/", v, u, True                         # x = c / b


def solve(problem, op=None, slip=None):
    """(worked solution, the answer it arrives at). op replaces the right operation by another
    on the same numbers (wrong-operation negatives); slip corrupts one step (see _slipped)."""
    right_op, l, r, is_equation = _plan(problem)
    op = op or right_op
    text, value = _STEP_WRITERS[op](l, r, slip)
    return (f"x={l}{op}{r}:" if is_equation else "") + text, value


def other_answers(problem):
    """{op: answer} of the other operations on the numbers the worked solution uses."""
    right_op, l, r, _ = _plan(problem)
    answers = {op: _apply(op, l, r) for op in _STEP_WRITERS if op != right_op}
    return {op: a for op, a in answers.items() if a is not None}


def worked_solution(problem):
    """The text between <think> and </think>."""
    return solve(problem)[0]


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
                re.compile(rf"####\s*({_NUM})"),
                re.compile(rf"the answer is\s*:?\s*({_NUM})", re.I)]


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


def split_steps(worked_text):
    """'x=1023-345:3-5-0+10=8,...' -> ['x=1023-345:', '3-5-0+10=8', ...]; a step ending in ':' is a header."""
    return [s for s in re.split(r"(?<=:)|[,;]", worked_text) if s]


def _is_true(step):
    m = re.fullmatch(r"(\d+)/(\d+)=(\d+)r(\d+)", step)
    if m:
        n, b, q, r = map(int, m.groups())
        return 0 <= r < b and q * b + r == n
    m = re.fullmatch(r"(\d+(?:[+\-*]\d+)*)=(-?\d+)", step)
    if not m:
        return False
    terms = re.findall(r"([+-]?)(\d+(?:\*\d+)*)", m.group(1))
    value = sum((-1 if sign == "-" else 1) * math.prod(map(int, t.split("*"))) for sign, t in terms)
    return value == int(m.group(2))


def check_steps(problem, worked_text):
    """Errors in a worked solution, [] if it is right: every step must be a true equation, and
    the steps must be the canonical ones (a true step with a dropped carry is still wrong)."""
    reference = worked_solution(problem)
    got, want = split_steps(worked_text), split_steps(reference)
    errors = [f"step {i + 1} {s!r} is false" for i, s in enumerate(got) if not s.endswith(":") and not _is_true(s)]
    if errors:
        return errors
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            return [f"step {i + 1} {g!r} should be {w!r}"]   # later steps follow from this one
    if len(got) != len(want):
        return [f"{len(got)} steps where {len(want)} are needed"]
    return [] if worked_text == reference else ["the steps are right but not joined as in the canonical form"]


def _column_and_carry(step):
    """(column inputs, carry/borrow inputs) of a column step, or None for other steps."""
    m = re.fullmatch(r"(\d+)/(\d+)=.*", step)
    if m:
        return (int(m.group(1)) % 10, m.group(2)), int(m.group(1)) // 10   # the carried-in remainder
    m = re.fullmatch(r"(\d)([+\-*])(\d+)[+\-](\d+)(\+10)?=.*", step)
    return (m.group(1, 2, 3), m.group(4, 5)) if m else None


def _carry_error(problem, worked_text):
    """True if the first step that departs from the canonical one has the right digits but the wrong carry."""
    for g, w in zip(split_steps(worked_text), split_steps(worked_solution(problem))):
        if g != w:
            gc, wc = _column_and_carry(g), _column_and_carry(w)
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
