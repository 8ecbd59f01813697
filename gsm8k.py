"""
GSM8K (Cobbe et al. 2021; MIT, vendored at vendor/gsm8k): grade-school word problems whose worked solutions
carry calculator annotations and end with the answer on a line of its own:

    Natalia sold 48/2 = <<48/2=24>>24 clips in May.
    Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.
    #### 72

Here: loading, the prompt format shared with the synthetic word problems (words.py), 2-shot chain-of-thought
prompts, answer checks (tasks.extract_answer, the project's one extraction) and the calculator, which writes
an annotation's result while the model samples (generation.complete's tools=).
"""
import ast
import json
import operator
import os
import re
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction

import tasks
from generation import complete
from tokenizer import END

SPLITS = ("train", "test")
_FINAL_RE = re.compile(r"\n#### (-?\d[\d,]*)\Z")   # the last line of every solution: '#### 72', '#### 1,080'


@dataclass(frozen=True)
class Row:
    question: str
    solution: str    # the worked solution, annotations included, ending with '#### N'
    answer: int


def load(split, path="vendor/gsm8k"):
    """The rows of vendor/gsm8k/{split}.jsonl; a missing file or a malformed row exits naming file:line."""
    if split not in SPLITS:
        raise SystemExit(f"gsm8k split {split!r} is unknown; allowed: {', '.join(SPLITS)}")
    return load_file(os.path.join(path, f"{split}.jsonl"))


def load_file(file):
    """The rows of a jsonl file of GSM8K's {question, answer} rows (train_tokenizer.py's corpus keys name files)."""
    if not os.path.exists(file):
        raise SystemExit(f"{file}: not found; GSM8K is vendored at vendor/gsm8k (its README.md says from where)")
    with open(file) as f:
        return [_row(line, f"{file}:{lineno}") for lineno, line in enumerate(f, 1)]


def _row(line, where):
    fix = "restore the file from openai/grade-school-math (vendor/gsm8k/README.md)"
    try:
        row = json.loads(line)
        question, solution = row["question"], row["answer"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise SystemExit(f"{where}: not a GSM8K row {{question, answer}} ({type(e).__name__}: {e}); {fix}")
    final = _FINAL_RE.search(solution) if isinstance(solution, str) else None
    if not isinstance(question, str) or final is None:
        raise SystemExit(f"{where}: the answer must be a worked solution ending with a line '#### N'; {fix}")
    return Row(question, solution, int(final.group(1).replace(",", "")))

# -----------------------------------------------------------------------------
# prompts


def prompt(question):
    return f"Question: {question}\nAnswer:"


def completion(solution):
    return f" {solution}{END}"


def few_shot_prompt(question, shots):
    """Worked examples (question, solution) before the question, each laid out as the prompt and its
    solution, so that a model never trained on the format continues with a worked solution of its own."""
    examples = "".join(f"{prompt(q)} {s}\n\n" for q, s in shots)
    return examples + prompt(question)


def default_shots(train_rows, n=2):
    """The n shortest train examples (question and solution together) with at least 2 annotations: a small
    model's context is short (the math tokenizer spends a token a character, and a median test question and
    solution already take ~500), and 2 annotations show a chain of steps and the calculator's format.
    Deterministic: sorted by length, ties in file order."""
    worked = [r for r in train_rows if r.solution.count("<<") >= 2]
    return [(r.question, r.solution) for r in sorted(worked, key=lambda r: len(r.question) + len(r.solution))[:n]]

# -----------------------------------------------------------------------------
# answers


def own_part(text):
    """A completion up to the first new '\\n\\nQuestion:': a few-shot model that keeps going writes a question of
    its own, and the last number of that is not its answer."""
    return text.split("\n\nQuestion:", 1)[0]


def extract_answer(text):
    return tasks.extract_answer(own_part(text))


def is_correct(text, answer):
    return tasks.is_correct(own_part(text), answer)

# -----------------------------------------------------------------------------
# the calculator


_MAX_CHARS = 50   # GSM8K's longest annotation has 36 characters, its result included
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_OPEN_RE = re.compile(r"<<([^<>=]*)=\Z")   # an annotation waiting for its result: '... 48/2 = <<48/2='


def calculate(expression):
    """The value of a GSM8K annotation's arithmetic as GSM8K writes it ('48/2' -> '24', '12/60' -> '0.2'), or
    None for anything but numbers, + - * /, signs and parentheses (names, calls, powers: nothing is eval()'d),
    a division by 0 or an expression over _MAX_CHARS characters (which also bounds the numbers)."""
    if len(expression) > _MAX_CHARS or not re.fullmatch(r"[\d.+\-*/() ]+", expression):
        return None   # so also no 1e999, 0x10 or 1_000 reaches the parser
    expression = expression.strip()   # Python reads a leading space as an indent
    try:
        return _format(_value(ast.parse(expression, mode="eval").body, expression))
    except (SyntaxError, ValueError, ZeroDivisionError):
        return None


def _value(node, source):
    """The exact value (a Fraction) of a parsed expression; ValueError for any node but a number, + - * /
    and a sign."""
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_value(node.left, source), _value(node.right, source))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        value = _value(node.operand, source)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return Fraction(ast.get_source_segment(source, node))   # as written: .2 is 1/5, not the float nearest it
    raise ValueError(f"{ast.get_source_segment(source, node)!r} is not arithmetic")


def _format(value):
    """A Fraction as GSM8K writes results: 24, -3, 0.25, 3.33 (exact when 4 decimals hold it, else rounded
    to 2, as in <<10/3=3.33>>)."""
    if value.denominator == 1:
        return str(value.numerator)
    places = 4 if (value * 10 ** 4).denominator == 1 else 2
    with localcontext() as ctx:
        ctx.prec = 2 * _MAX_CHARS   # every digit of a number a _MAX_CHARS expression makes, and its decimals
        rounded = (Decimal(value.numerator) / value.denominator).quantize(Decimal(10) ** -places)
    return format(rounded.normalize(), "f")


def open_annotation(text):
    """The expression of the annotation text ends in, waiting for its result ('<<48/2=' -> '48/2'), or None."""
    m = _OPEN_RE.search(text)
    return m.group(1) if m else None


def calculator_fill(text):
    """The text to force after a completion so far: an open annotation's result and its close ('24>>'), or
    None (no annotation waits, or the calculator cannot read it: the model goes on by itself)."""
    expression = open_annotation(text)
    result = calculate(expression) if expression is not None else None
    return None if result is None else f"{result}>>"


def model_calculator(model, tok, rt, max_new_tokens=600):
    """A fill like calculator_fill whose results come from a nanomath arithmetic checkpoint instead: an
    annotation that is one operation on two whole numbers >= 0 (<<48/2=) becomes the task prompt 48/2=?,
    answered greedily; anything else, or a division that is not exact (no task form), gets None.
    An experiment: how far a word-problem model gets with the arithmetic model as its calculator."""
    def fill(text):
        expression = open_annotation(text)
        m = re.fullmatch(r"\s*(\d+)\s*([-+*/])\s*(\d+)\s*", expression or "")
        problem = tasks.parse_prompt(f"{int(m[1])}{m[2]}{int(m[3])}=?") if m else None   # 007 -> 7, as trained
        if problem is None:
            return None
        room = min(max_new_tokens, model.config.block_size - len(tok.encode(problem.prompt)))
        if room < 1:
            return None
        texts, _ = complete(model, tok, [problem.prompt], rt, room)
        answer = tasks.extract_answer(texts[0])
        return None if answer is None else f"{answer.replace(',', '')}>>"
    return fill
