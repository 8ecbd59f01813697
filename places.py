"""
Digit places: the second position of every token in the 'coupled' position scheme (model.py, pos='coupled').

A token's place is the place value of the column it works on: 1 for the units, 2 for the tens, and so on.
Attention then finds "the digit of a in this column" by place, whatever the numbers' lengths, instead of by
a distance in the text that grows with every digit. That is position coupling (Cho et al. 2024, "Position
Coupling: Improving Length Generalization of Arithmetic Transformers Using Task Structure"), here as a
rotary angle rather than a learned embedding, so that only differences of places matter: a model trained
on 3-digit numbers meets no new place difference in the units column of a 6-digit one.

    prompt       3 4 5 + 6 7 8 = ?          a digit's place in its number, counted from the units
                 3 2 1 0 3 2 1 0 0          (every other prompt token 0)
    steps        <think>5+8+0=13+0=13 ,4+7+1=11+1=12 ,3+6+1=9+1=10
                 1      1111111111111 22222222222222 3333333333333
                                            the column of the step (a separator belongs to the step it
                                            opens); compare steps (a-b) count down from the top place,
                                            division steps from the dividend's length; a multiplication
                                            block *d: starts at the place of its multiplier digit d
    run          |3201                      the k-th digit of the result, units first, has place k
                 1 1234
    answer       </think>1023<|end|>        counts down from the answer's length L + 1 (L: the run
                 5       43210              without its trailing zeros); a '-' sign takes L + 1

Beside its place, every token has a *local position*, the second coordinate: its index in the step it
belongs to (0 at the separator that opens the step), so that the model knows "the digit after the first +"
without any position that grows with the numbers. A number written outside the steps (in the prompt, the
run, the answer) has all its digits at the position of its first one: they differ by place only. So a
model sees nothing that is longer at 6 digits than at 3 except more places, and every place difference it
reads within a column was in training. The prompt's local positions count its operators (a's digits 0, b's 1).

The places follow the text the model writes, token by token (PlaceTracker), so training, evaluation and
the KV-cache engine compute them the same way; the prompt only tells where the first step sits.
"""
from tasks import Problem, prompt_type
from tokenizer import END, END_THINK, THINK


def is_digit(token):
    return len(token) == 1 and token.isdigit()


def prompt_places(tokens):
    """(place, local position) of each prompt token (strings): a digit's place in its number, counted from
    the units (the prompt is whole, so the end of every number is known), 0 for every other token; the local
    position counts the non-digit tokens so far."""
    places, run = [0] * len(tokens), 0
    for i in reversed(range(len(tokens))):
        run = run + 1 if is_digit(tokens[i]) else 0
        places[i] = run
    local = [sum(not is_digit(t) for t in tokens[:i + 1]) for i in range(len(tokens))]
    return list(zip(places, local))


def first_step(prompt):
    """(place, direction, compares first) of the worked solution's first step for a prompt: a-b compares from
    the top place down, then subtracts from the units up; division starts at the dividend's top digit."""
    task_type = prompt_type(prompt)
    if task_type is None:
        return 1, 1, False
    x, y = (len(str(abs(n))) for n in Problem(task_type, prompt, 0).operands)
    if task_type == "a_minus_b_q":
        return max(x, y), -1, True
    if task_type in ("a_over_b_q", "x_times_b_eq_c_q"):
        return (x if task_type == "a_over_b_q" else y), -1, False    # the dividend: a, or c in x*b=c
    return 1, 1, False


BLOCK_STRIDE = 16   # more than the tokens of any multiplication step
_token_strings = {}


def token_strings(tok):
    """Every token id's text, as a list (the math tokenizer has one token per digit)."""
    if tok.name not in _token_strings:
        _token_strings[tok.name] = tok.decode_tokens(range(tok.vocab_size))
    return _token_strings[tok.name]


class PlaceTracker:
    """The (place, local position) of every token of one sequence, a token at a time: construct it with the
    tokenizer and the prompt's token ids, then push() each completion token id as it is written, in order;
    push returns that token's pair. .prompt holds the prompt's pairs."""

    def __init__(self, tok, prompt_ids):
        self.strings = token_strings(tok)
        prompt_tokens = [self.strings[i] for i in prompt_ids]
        self.prompt = prompt_places(prompt_tokens)
        self.start = first_step("".join(prompt_tokens))
        self.phase, self.place, self.step, self.compared, self.blocks, self.run = "before", 0, 1, False, 0, []
        self.local, self.previous = 0, ""

    def push(self, token_id):
        token = self.strings[token_id]
        place = self._place(token)
        if token in (THINK, END_THINK, ",", ":", ";", "|"):
            self.local = 0                           # a separator opens a step: position 0
        elif not (is_digit(token) and is_digit(self.previous) and self.phase in ("run", "answer")):
            self.local += 1                          # a number outside the steps keeps its first digit's
        self.previous = token
        # a multiplication block's steps sit BLOCK_STRIDE further on than the last block's: a step that adds
        # into the running sum finds the last block's step in its column, not an older one's
        block = BLOCK_STRIDE * self.blocks if self.phase == "steps" else 0
        return place, (self.local + block if self.phase != "done" or token == END else 0)

    def _place(self, token):
        if self.phase == "before":          # a bare answer (no worked solution) has no columns to follow
            if token != THINK:
                self.phase = "done"
                return 0
            self.phase = "steps"
            self.place, self.step, self.compared = self.start
            return self.place
        if self.phase == "steps":
            if token == ",":
                self.place += self.step
            elif token == ":" and self.compared:     # the comparison is over: subtract from the units up
                self.place, self.step, self.compared = 1, 1, False
            elif token == ";":                       # the next multiplication block, one place further up
                self.blocks += 1
                self.place = self.blocks + 1
            elif token == "|":
                self.phase, self.place = "run", 1
            elif token == END_THINK:                 # no run written: the answer is counted from 1 digit
                self.phase, self.place = "answer", 2
            return self.place
        if self.phase == "run":
            if is_digit(token):
                self.run.append(token)
                return len(self.run)
            if token == END_THINK:
                self.phase = "answer"
                self.place = len("".join(self.run).rstrip("0")) + 1 if any(d != "0" for d in self.run) else 2
            return self.place
        if self.phase == "answer":
            if is_digit(token):
                self.place -= 1
                return self.place
            if token == END:
                self.phase = "done"
                return 0
            return self.place
        return 0


def completion_places(tok, prompt_ids, completion_ids):
    """(place, local position) of every token of a prompt followed by a completion (token ids). A prompt that
    runs on into the worked solution (a Step-DPO pair's prompt holds the steps both sides share) is tracked
    from its <think> on, as those tokens were written: read as a question, its steps would get places no
    generation ever gives them."""
    ids, strings = prompt_ids + completion_ids, token_strings(tok)
    question = next((j for j, i in enumerate(prompt_ids) if strings[i] == THINK), len(prompt_ids))
    tracker = PlaceTracker(tok, ids[:question])
    return tracker.prompt + [tracker.push(i) for i in ids[question:]]


def document_places(tok, ids):
    """(place, local position) of every token of one document (token ids): the prompt up to its first '?',
    then the completion."""
    strings = token_strings(tok)
    end = next((j + 1 for j, i in enumerate(ids) if strings[i] == "?"), len(ids))
    return completion_places(tok, ids[:end], ids[end:])


def stream_places(tok, ids):
    """(place, local position) of every token of the pretraining stream (token ids): documents, each ended by
    <|endoftext|>."""
    places, start = [], 0
    for end in [j + 1 for j, i in enumerate(ids) if i == tok.eot_id] + [len(ids)]:
        if end > start:
            places += document_places(tok, ids[start:end])
        start = end
    return places
