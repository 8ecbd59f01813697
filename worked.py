"""
Worked solutions: the column steps that every completion writes between <think> and </think>.

Every step is a true equation of bounded size, however long the numbers are: one digit of each number
per column, so a longer number means more steps, never bigger ones. Columns go least significant digit
first (the carry is known before it is needed), except in division, which goes from the most significant
digit, as by hand. Each writer returns the steps and the *run*: the result's digits, units first, one
per column (plus a final carry when there is one). The worked solution ends with the run after a '|',
and the answer is the run read backwards (`1023` from `|3201`), without its leading zeros:

    345+678      5+8+0=13+0=13,4+7+1=11+1=12,3+6+1=9+1=10|3201          -> 1023
    345-178      3>1:5-8-0+10=7,4-7-1+10=6,3-1-1=1|761                    -> 167
    808-814      8=8,0<1:4-8-0+10=6,1-0-1=0,8-8-0=0|600                   -> -6
    345*67       *7:5*7+0+0=35+0=35,4*7+0+3=28+3=31,3*7+0+3=21+3=24;
                 *6:5*6+1+0=30+1=31,4*6+4+3=24+7=31,3*6+2+3=18+5=23|51132 -> 23115 (one line)
    1222/47      1-0*47=1,12-0*47=12,122-2*47[7*2=14+0=14 4*2=8+1=9 2-4-0+10=8 2-9-1+10=2 1-0-1=0],
                 282-6*47[7*6=42+0=42 4*6=24+4=28 2-2-0=0 8-8-0=0 2-2-0=0]|6200                -> 26 (one line)

- Addition writes the sum of a column's two digits before adding the carry (`4+7+1=11+1=12`), as
  multiplication writes its product and small sum before the result: an operation at a time, never three
  numbers added at once (README, The tasks, has the measurements).
- Subtraction first compares the numbers digit by digit from the top (`0<1`: a missing digit is 0) until
  they differ, then subtracts the smaller from the larger; a borrowing column writes its borrowed ten
  after its digits (`5-8-0+10=7`), so the borrow is decided after the digits it depends on are written.
- Multiplication keeps a running sum and adds each partial product into it column by column: the block
  `*6:` multiplies by the multiplier's digit 6, and its step `4*6+4+3=24+7=31` is multiplicand digit x
  multiplier digit + the running sum's digit in that column + the carry, with the product and the sum of
  the two small digits (4+3=7) written out before the result: without them the model must add into a
  product it never wrote, and add three numbers at once, which the small model mostly cannot (README, The
  tasks, has the measurements). The multiplier is the shorter number, so a long
  number makes the blocks longer, never more numerous.
- Long division brings down one digit of the dividend per step and multiplies and subtracts, by columns:
  `282-6*47[...]` says the quotient digit is 6; inside the brackets the product 6*47 is made a divisor digit
  at a time (`4*6=24+4=28`: the digit's product, then the carry), and then subtracted from 282 a digit at a
  time with subtraction's columns (`8-8-0=0`), so the remainder (here 0) comes out below the divisor. Until
  commit 15358c6 a step did that arithmetic in one go (`282-6*47=282-282=0`): the product of a 2-digit
  divisor was wrong in 43% of the failed divisions' first wrong steps and the remainder in 24% (README, The
  tasks). A step whose quotient digit is 0 only restates the current number (`12-0*47=12`).

slip=(k, delta) adds delta to the result of the k-th column step (in division, to the k-th step's quotient
digit, whose columns stay right) and carries the error on through the later steps: that is how
corrupted-step negatives are made. Compare steps are not column steps.
"""
import math
import re


def digits_of(n):
    """[units, tens, ...] of n >= 0."""
    return [int(c) for c in reversed(str(n))]


def _at(ds, i):
    return ds[i] if i < len(ds) else 0


def _slipped(value, k, slip):
    if slip is None or slip[0] != k:
        return value
    return value + slip[1] if value + slip[1] >= 0 else value + 1


def add_steps(a, b, slip=None):
    """a + b: 'x+y+carry=t+carry=sum' per column, t = x + y."""
    da, db = digits_of(a), digits_of(b)
    steps, run, carry = [], [], 0
    for i in range(max(len(da), len(db))):
        x, y = _at(da, i), _at(db, i)
        s = _slipped(x + y + carry, i, slip)
        steps.append(f"{x}+{y}+{carry}={x + y}+{carry}={s}")       # a slip is in s, not in x+y
        run.append(s % 10)
        carry = s // 10
    return ",".join(steps), run + digits_of(carry) * (carry > 0)


def sub_steps(a, b, slip=None):
    """a - b for a >= b: 'x-y-borrow=d', or 'x-y-borrow+10=d' in a column that borrows."""
    db = digits_of(b)
    steps, run, borrow = [], [], 0
    for i, x in enumerate(digits_of(a)):
        y = _at(db, i)
        need = int(x - y - borrow < 0)
        d = _slipped(10 * need + x - y - borrow, i, slip)
        steps.append(f"{x}-{y}-{borrow}{'+10' * need}={d}")
        run.append(d)
        borrow = need
    return ",".join(steps), run


def compare_steps(a, b):
    """'x=y,...' from the top column down to the first column where the digits differ ('0<1': a missing
    digit is 0). Returns the steps and -1, 0 or 1 as a < b, a == b, a > b."""
    da, db = digits_of(a), digits_of(b)
    steps = []
    for i in reversed(range(max(len(da), len(db)))):
        x, y = _at(da, i), _at(db, i)
        steps.append(f"{x}{'<' if x < y else '>' if x > y else '='}{y}")
        if x != y:
            return ",".join(steps), (x > y) - (x < y)
    return ",".join(steps), 0


def minus_steps(a, b, slip=None):
    """a - b of any sign: compare, then the larger minus the smaller. Returns (text, run, sign)."""
    compared, order = compare_steps(a, b)
    text, run = sub_steps(*((a, b) if order >= 0 else (b, a)), slip)
    return f"{compared}:{text}", run, (-1 if order < 0 else 1)


def mul_steps(a, b, slip=None):
    """a * b: a block per digit of the shorter number (the multiplier), each adding multiplicand x that
    digit into the running sum, one column a step: 'n*d+r+carry=p+s=v', p = n*d, r the running sum's
    digit there, s = r + carry."""
    n, m = (a, b) if len(str(b)) <= len(str(a)) else (b, a)
    dn = digits_of(n)
    running = [0] * (len(dn) + len(str(m)))      # the running sum's digits, units first
    blocks, k = [], 0
    for j, d in enumerate(digits_of(m)):
        steps, carry = [], 0
        for i, x in enumerate(dn):
            r = running[i + j]
            v = _slipped(x * d + r + carry, k, slip)
            k += 1
            steps.append(f"{x}*{d}+{r}+{carry}={x * d}+{r + carry}={v}")   # a slip is in v, not in x*d or r+c
            running[i + j], carry = v % 10, v // 10
        running[len(dn) + j] = carry                # may be >= 10 only after a slip
        blocks.append(f"*{d}:" + ",".join(steps))
    top = running[-1]
    run = running[:-1] + digits_of(top) * (top > 0)
    return ";".join(blocks), run


def div_step(cur, b, q):
    """One long-division step: the current number minus q times the divisor, multiplied and subtracted by
    columns inside the brackets, units first: 'cur-q*b[' then a product column 'd*q=p+c=v' per digit d of b
    (p = d*q, c the carry) and a subtraction column 'x-y-borrow(+10)=r' per digit of cur, y the product's
    digit there; the remainder is cur - q*b. A step with q = 0 only restates cur: 'cur-0*b=cur'."""
    if q == 0:
        return f"{cur}-0*{b}={cur}"
    columns, carry = [], 0
    for d in digits_of(b):
        p = d * q
        columns.append(f"{d}*{q}={p}+{carry}={p + carry}")
        carry = (p + carry) // 10
    text, _ = sub_steps(cur, q * b)
    return f"{cur}-{q}*{b}[{' '.join(columns + text.split(','))}]"


def div_steps(a, b, slip=None):
    """a / b, exact: per digit of a from the top, the current number (the last remainder with the next digit
    brought down) minus its quotient digit times b (div_step), so that the remainder is below b. The run is
    the quotient's digits."""
    steps, quotient, r = [], [], 0
    for k, c in enumerate(str(a)):
        cur = 10 * r + int(c)
        q, r = divmod(cur, b)
        step = div_step(cur, b, q)
        written = _slipped(q, k, slip)               # a wrong quotient digit; the columns stay right
        steps.append(f"{cur}-{written}{step[len(f'{cur}-{q}'):]}")
        quotient.append(written)
    return ",".join(steps), [d for q in reversed(quotient) for d in digits_of(q)]


def run_value(run):
    return sum(d * 10 ** i for i, d in enumerate(run))


# -----------------------------------------------------------------------------
# reading worked solutions back: steps, their truth, their carries

def split_steps(worked_text):
    """'x=c-b:3-5-0+10=8,...|842' -> ['x=c-b:', '3-5-0+10=8', ..., '|842']: a step ending in ':' is a
    header (or a compare step closing the comparison), '|...' is the run."""
    return [s for s in re.split(r"(?<=:)|[,;]|(?=\|)", worked_text) if s]


def _value(expression):
    """The value of a sum of products of whole numbers: '4*7+4+3' -> 35."""
    return sum((-1 if sign == "-" else 1) * math.prod(map(int, term.split("*")))
               for sign, term in re.findall(r"([+-]?)(\d+(?:\*\d+)*)", expression))


def is_true(step):
    """Is a step a true statement: a comparison, a chain of equal sums and products ('4*7+4+3=28+7=35'),
    or a long-division step whose remainder is below the divisor? True is not canonical: '4*7+0+3=27+1+3=31'
    is true, and tasks.check_steps still rejects it."""
    step = step.rstrip(":").split(":")[-1]          # '*7:5*7+0+0=35+0+0=35' -> '5*7+0+0=35+0+0=35'
    m = re.fullmatch(r"(\d)([<=>])(\d)", step)
    if m:
        x, rel, y = int(m.group(1)), m.group(2), int(m.group(3))
        return {"<": x < y, "=": x == y, ">": x > y}[rel]
    m = re.fullmatch(r"(\d+)-(\d+)\*(\d+)(?:=\d+|\[.*\])", step)
    if m:                                           # a division step: its columns, and a remainder below b
        cur, q, b = map(int, m.groups())
        return b > 0 and 0 <= cur - q * b < b and step == div_step(cur, b, q)
    if not re.fullmatch(r"\d+(?:[+\-*]\d+)*(?:=\d+(?:[+\-*]\d+)*)*=-?\d+", step):
        return False
    return len({_value(side) for side in step.split("=")}) == 1


def column_and_carry(step):
    """(column inputs, carry inputs) of a column step, or None for other steps: the carry (or borrow, or
    the remainder brought into a division step) is what the column takes from the column before it."""
    step = step.split(":")[-1]
    m = re.fullmatch(r"(\d+)-(\d)\*(\d+)[=\[].*", step)
    if m:
        return (int(m.group(1)) % 10, m.group(2), m.group(3)), int(m.group(1)) // 10
    m = re.fullmatch(r"(\d)\*(\d)\+(\d)\+(\d)=.*", step)
    if m:
        return m.group(1, 2, 3), m.group(4)
    m = re.fullmatch(r"(\d)([+\-])(\d)[+\-](\d)(\+10)?=.*", step)
    return (m.group(1, 2, 3), m.group(4, 5)) if m else None
