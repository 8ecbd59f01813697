"""Word problems (words.py): true worked solutions, and test splits that never leak into training."""
import random
import re

import pytest

import words


@pytest.fixture(scope="module")
def splits():
    rng = random.Random(0)
    return words.sample_stories(3000, rng, "train"), words.sample_stories(1000, rng, "test")


def test_every_annotation_is_true_and_the_answer_is_the_last_result(splits):
    for story in splits[0][:500] + splits[1][:500]:
        annotations = re.findall(r"<<(\d+)([-+*/])(\d+)=(\d+)>>(\d+)", story.solution)
        assert 2 <= len(annotations) <= 4, story
        for a, op, b, result, written in annotations:
            value = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b),
                     "/": int(a) / int(b)}[op]
            assert value == int(result) == int(written), story
        assert story.solution.endswith(f"\n#### {story.answer}")
        assert 0 <= story.answer <= words.MAX_COUNT


def test_numbers_in_words_are_the_fixed_ones():
    story = words.make_story("s0|mul.1|div.1|q0", random.Random(3), "train")   # "doubles", then "half"
    assert "doubles" in story.question and "half" in story.question
    assert re.search(r"\*2=", story.solution) and re.search(r"/2=", story.solution)


def test_test_templates_names_and_objects_never_occur_in_training(splits):
    train, test = splits
    train_names, train_objects = words.split_lists("train")
    test_names, test_objects = words.split_lists("test")
    assert not set(train_names) & set(test_names) and not set(train_objects) & set(test_objects)
    assert not {s.template for s in train} & {s.template for s in test}
    assert all(words.template_split(s.template) == "test" for s in test)
    for story in train:
        assert not any(re.search(rf"\b{n}\b", story.question) for n in test_names), story
        assert not any(o in story.question for o in test_objects), story
    for story in test:
        assert not any(re.search(rf"\b{n}\b", story.question) for n in train_names), story


def test_every_phrasing_of_the_test_split_is_trained_on(splits):
    """Only the combination is new: a from-scratch model cannot learn a sentence it never saw."""
    parts = lambda stories: {p for s in stories for p in s.template.split("|")}
    assert parts(splits[1]) <= parts(splits[0])


def test_stories_are_distinct_and_respect_exclude():
    rng = random.Random(1)
    first = words.sample_stories(200, rng, "train")
    more = words.sample_stories(200, rng, "train", exclude={s.question for s in first})
    questions = [s.question for s in first + more]
    assert len(set(questions)) == len(questions)


def test_training_texts_are_deterministic():
    assert words.training_texts(50, 7) == words.training_texts(50, 7)
    assert words.training_texts(50, 7) != words.training_texts(50, 8)
