"""
Word problems: short GSM8K-like stories with 2-4 operations, generated with their answers and worked
solutions in GSM8K's own format (a `<<48/2=24>>` calculator annotation on every step, then `#### N`):

    Mia has 25 stickers. She buys 3 bags with 12 stickers in each bag. She gives away half of them.
    How many stickers does Mia have now?

    That is 3*12 = <<3*12=36>>36 stickers.
    Mia has 25+36 = <<25+36=61>>61 stickers.        (a story is redrawn until every division is exact)
    ...
    #### 30

A story is one running count, changed by events. Each event kind (add, sub, mul, div, packs, pack_sub)
has several phrasings, some with the number written as a word ("doubles", "half"); the worked solution
has one fixed line per kind, so the model has to read which operation a sentence means. A template is
the sequence of phrasings: (start, event, event, ..., question).

Held out by construction, so that test accuracy measures unseen wording and not memorised stories:
- templates: the test split uses only templates whose hash puts them in the test share; every single
  phrasing still occurs in training, only its combination with the others is new;
- names and objects: the test split's names and objects never occur in training.
"""
import random
import zlib
from dataclasses import dataclass

# Names and objects: a few hundred of each, so that a model learns to copy whatever name or object a story
# has (with 36 names it learnt the 36 and fell apart on a new one). A stable hash puts one in 4 in the test
# split. Names are real ones and made-up ones of two or three syllables (spelt in 1-3 tokens each).
REAL_NAMES = ["Mia", "Liam", "Emma", "Noah", "Olivia", "Lucas", "Ava", "Ethan", "Sofia", "Mason", "Chloe", "Logan",
              "Zoe", "Owen", "Lily", "Caleb", "Grace", "Henry", "Nora", "Jack", "Ella", "Leo", "Ruby", "Sam",
              "Hannah", "Ben", "Alice", "Tom", "Maya", "Omar", "Julia", "Ivan", "Clara", "Hugo", "Nina", "Felix",
              "Priya", "Kenji", "Amara", "Diego", "Leila", "Tariq", "Ingrid", "Mateo", "Yuki", "Emeka", "Freya",
              "Rafael"]
_ONSETS, _VOWELS, _CODAS = "b d f g h j k l m n p r s t v z br ch sh tr".split(), "a e i o u".split(), ["", "n", "r", "l"]
OBJECTS = ("apples stickers marbles pencils cookies stamps coins books shells cards beads candles buttons muffins "
           "balloons crayons flowers eggs rocks ribbons notebooks cupcakes peaches lemons feathers puzzles bottles "
           "kites pebbles tickets erasers oranges plums pears cherries carrots potatoes onions tomatoes bananas "
           "grapes melons nuts acorns leaves sticks bricks blocks dolls robots trucks boats planes trains comics "
           "magazines letters postcards photos paintings drawings socks hats gloves scarves shirts shoes boots "
           "rings bracelets necklaces badges medals trophies keys locks spoons forks cups plates bowls jars "
           "boxes bags baskets buckets pots tiles nails screws bolts chairs tables lamps pillows blankets towels "
           "stones seeds bulbs roses tulips daisies").split()
N_MADE_UP_NAMES = 400


def _made_up_names(n):
    """n distinct made-up names of 2-3 syllables, the same every run."""
    rng, names = random.Random(0), []
    while len(names) < n:
        name = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
                       for _ in range(rng.choice((2, 2, 3)))).capitalize()
        if name not in names and name not in REAL_NAMES:
            names.append(name)
    return names


def pronoun(name):
    return "she" if name in REAL_NAMES[0::2] or name[-1] in "ai" else "he"   # the real list alternates she, he


def _split_of(word):
    return "test" if zlib.crc32(word.encode()) % 4 == 0 else "train"


NAMES = REAL_NAMES + _made_up_names(N_MADE_UP_NAMES)
TEST_TEMPLATE_SHARE = 4      # one template in 4 belongs to the test split

# {n} name, {p}/{P} pronoun, {f} a friend's name, {o} object, {a} {b} {k} numbers
STARTS = ["{n} has {a} {o}.", "{n} collects {a} {o}.", "There are {a} {o} in {n}'s box.",
          "{n} starts the week with {a} {o}."]
EVENTS = {
    "add": ["{P} buys {b} more {o}.", "{f} gives {n} {b} {o}.", "{P} finds {b} more.",
            "The next day {n} gets another {b} {o}."],
    "sub": ["{P} gives {b} {o} to {f}.", "{P} loses {b} of them.", "{n} sells {b} {o} at the market.",
            "Then {n} uses {b} of them."],
    "mul": ["A week later {n} has {k} times as many {o}.", "{P} doubles the {o}.", "{P} triples the {o}.",
            "{f} gives {n} enough {o} to make {k} times as many."],
    "div": ["{P} splits the {o} into {k} equal piles and keeps one pile.", "{P} gives away half of them.",
            "{n} keeps only a third of the {o}.", "{P} shares them equally among {k} friends and keeps one share."],
    "packs": ["{P} buys {k} bags with {b} {o} in each bag.", "{f} gives {n} {k} boxes of {b} {o} each.",
              "{P} picks {b} {o} a day for {k} days."],
    "pack_sub": ["{P} gives {b} {o} to each of {k} friends.", "{P} uses {b} {o} a day for {k} days."],
}
QUESTIONS = ["How many {o} does {n} have now?", "How many {o} does {n} have in the end?", "How many {o} are left?",
             "How many {o} does {n} end up with?"]
FIXED_K = {("mul", 1): 2, ("mul", 2): 3, ("div", 1): 2, ("div", 2): 3}   # "doubles", "half", ...
OPS = {"add": 1, "sub": 1, "mul": 1, "div": 1, "packs": 2, "pack_sub": 2}   # arithmetic steps an event takes
MAX_COUNT = 999


@dataclass(frozen=True)
class Story:
    question: str
    solution: str     # worked lines, the last one "#### N"
    answer: int
    template: str     # the phrasings used, e.g. "s2|add.1|div.0|q3"


def split_lists(split):
    """(names, objects) of a split: "test" gets the held-out ones, "train" (and val) the rest."""
    return [n for n in NAMES if _split_of(n) == split], [o for o in OBJECTS if _split_of(o) == split]


def template_split(template):
    """'test' or 'train', by a stable hash of the template (crc32, not Python's salted hash)."""
    return "test" if zlib.crc32(template.encode()) % TEST_TEMPLATE_SHARE == 0 else "train"


def _event_numbers(kind, phrasing, count, rng):
    """(b, k, new count) for one event on the running count, or None when this event cannot apply to it
    (a count that would go below 0 or above MAX_COUNT, or a division that is not exact)."""
    k = FIXED_K.get((kind, phrasing)) or rng.randint(2, 9)
    b = rng.randint(2, 40) if kind in ("add", "sub") else rng.randint(2, 15)
    new = {"add": count + b, "sub": count - b, "mul": count * k, "div": count // k if count % k == 0 else -1,
           "packs": count + k * b, "pack_sub": count - k * b}[kind]
    return (b, k, new) if 0 <= new <= MAX_COUNT and not (kind == "div" and count == 0) else None


def _solution_lines(kind, count, b, k, new):
    """A step's worked lines: a fixed phrase per kind and the arithmetic, so that a line copies numbers only
    (lines that named the story's person and object were copied wrong for unseen ones: README)."""
    if kind in ("packs", "pack_sub"):
        sign, then = ("+", "Adding them") if kind == "packs" else ("-", "Taking them away")
        return [f"{k} times {b} is {k}*{b} = <<{k}*{b}={k * b}>>{k * b}.",
                f"{then}: {count}{sign}{k * b} = <<{count}{sign}{k * b}={new}>>{new}."]
    return [{"add": f"Adding {b}: {count}+{b} = <<{count}+{b}={new}>>{new}.",
             "sub": f"Taking away {b}: {count}-{b} = <<{count}-{b}={new}>>{new}.",
             "mul": f"{k} times as many: {count}*{k} = <<{count}*{k}={new}>>{new}.",
             "div": f"One share of {k}: {count}/{k} = <<{count}/{k}={new}>>{new}."}[kind]]


def draw_template(rng, split):
    """A template of the split: a start, events worth 2-4 arithmetic steps, a question."""
    while True:
        events, steps = [], 0
        target = rng.randint(2, 4)
        while steps < target:
            kind = rng.choice([k for k in EVENTS if steps + OPS[k] <= target])
            events.append(f"{kind}.{rng.randrange(len(EVENTS[kind]))}")
            steps += OPS[kind]
        template = "|".join([f"s{rng.randrange(len(STARTS))}", *events, f"q{rng.randrange(len(QUESTIONS))}"])
        if template_split(template) == split:
            return template


def make_story(template, rng, split):
    """A story for a template, with names, objects and numbers drawn for it; None if the numbers found
    do not fit (the caller draws again)."""
    names, objects = split_lists(split)
    n, f = rng.sample(names, 2)
    o = rng.choice(objects)
    pron = pronoun(n)
    count = rng.randint(2, 99)
    start, *events, question = template.split("|")
    sentences = [STARTS[int(start[1:])].format(n=n, a=count, o=o)]
    lines = []
    for event in events:
        kind, phrasing = event.split(".")
        numbers = next(filter(None, (_event_numbers(kind, int(phrasing), count, rng) for _ in range(20))), None)
        if numbers is None:
            return None
        b, k, new = numbers
        sentences.append(EVENTS[kind][int(phrasing)].format(n=n, p=pron, P=pron.capitalize(), f=f, o=o, b=b, k=k))
        lines += _solution_lines(kind, count, b, k, new)
        count = new
    sentences.append(QUESTIONS[int(question[1:])].format(n=n, o=o))
    return Story(" ".join(sentences), "\n".join(lines + [f"#### {count}"]), count, template)


def sample_stories(n, rng, split, exclude=frozenset()):
    """n distinct stories of a split ("train" or "test"), none with a question in exclude."""
    stories, seen = [], set(exclude)
    while len(stories) < n:
        story = make_story(draw_template(rng, split), rng, split)
        if story is not None and story.question not in seen:
            seen.add(story.question)
            stories.append(story)
    return stories


def training_texts(n, seed):
    """n training-split stories as plain text (question, then solution): a tokenizer's corpus."""
    return [f"{s.question}\n{s.solution}" for s in sample_stories(n, random.Random(seed), "train")]
