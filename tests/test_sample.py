import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from common import checkpoint_payload, save_checkpoint
from generation import generate
from model import GPT, GPTConfig
from sample import prompt_error, stream
from tokenizer import get_tokenizer

ROOT = Path(__file__).resolve().parent.parent
TOK = get_tokenizer("math")


def tiny_model(block_size=32):
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=block_size, vocab_size=TOK.vocab_size, n_layer=2, n_head=2, n_embd=32)).eval()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("sample") / "ckpt.pt"
    model = tiny_model()
    save_checkpoint(str(path), **checkpoint_payload(model, torch.optim.AdamW(model.parameters()), {}, 7, {"tokenizer": "math"}))
    return str(path)


def run_sample(ckpt, *args, stdin=""):
    return subprocess.run([sys.executable, "sample.py", f"--ckpt={ckpt}", "--device=cpu", "--max_new_tokens=6", *args],
                          input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_stream_matches_the_batched_engine():
    model = tiny_model()
    ids = TOK.encode("345+678=?")
    streamed = list(stream(model, ids, 12))
    reference = generate(model, [ids], 12, use_cache=False)   # recomputes the whole sequence every step
    assert [t for t, _ in streamed] == reference.tokens[0].tolist()
    assert [p for _, p in streamed] == pytest.approx(reference.logprobs[0].exp().tolist(), abs=1e-5)


def test_stream_stops_at_the_stop_token():
    model = tiny_model()
    ids = TOK.encode("1+1=?")
    first = next(stream(model, ids, 5))[0]
    assert [t for t, _ in stream(model, ids, 5, stop_id=first)] == [first]


def test_stream_writes_what_the_tool_forces_and_feeds_it_to_the_model():
    """A calculator's ids come out with probability None, and the model continues after them as if it had
    written them: the same tokens as generating from the prompt with the forced ids appended."""
    model = tiny_model()
    ids = TOK.encode("1+1=?")
    forced = TOK.encode("42")
    tool = lambda row, generated: forced if len(generated) == 1 else None   # after the first sampled token
    streamed = list(stream(model, ids, 6, tool=tool))
    first = streamed[0][0]
    assert [t for t, _ in streamed[1:3]] == forced and [p for _, p in streamed[1:3]] == [None, None]
    rest = [t for t, _ in stream(model, ids + [first] + forced, 3)]
    assert [t for t, _ in streamed[3:]] == rest
    assert all(p is not None for _, p in streamed[3:])


@pytest.mark.parametrize("text, message", [
    ("", "empty prompt"),
    ("what is 2+2", "unexpected character(s) 'ahistw'"),
    ("1" * 40 + "+1=?", "prompt of 44 tokens leaves no room to answer: block_size is 32"),
])
def test_prompt_errors(text, message):
    assert message in prompt_error(TOK, text, 32)


def test_valid_prompts_pass():
    for text in ("17+19=?", "72-x=34, x=?", "x*7=2415, x=?", "12-x=-333, x=?"):
        assert prompt_error(TOK, text, 32) is None


def test_interactive_session(ckpt):
    r = run_sample(ckpt, stdin="17+19=?\nhello\n\n" + "9" * 40 + "+1=?\n72-x=34, x=?\nquit\n")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "(iter 7)" in out
    assert "unexpected character(s) 'ehlo'" in out and "empty prompt" in out and "leaves no room" in out
    assert "17+19=?" in out and "72-x=34, x=?" in out
    assert "the answer is 36" in out or "right" in out   # a random model is wrong, and told so
    assert out.count(">>> ") == 6                        # asked again after every line, bad ones included


def test_ctrl_d_exits_cleanly(ckpt):
    r = run_sample(ckpt, stdin="17+19=?\n")
    assert r.returncode == 0 and r.stdout.count(">>> ") == 2 and not r.stderr


def test_ctrl_c_exits_cleanly(ckpt):
    p = subprocess.Popen([sys.executable, "sample.py", f"--ckpt={ckpt}", "--device=cpu"], cwd=ROOT,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.stdout.readline()                                   # the banner: the prompt loop is running
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0 and "Traceback" not in err


def test_prompts_from_the_command_line_with_tokens(ckpt):
    r = run_sample(ckpt, "--prompt=17+19=?|3*4=?", "--show_tokens=True", "--temperature=0.8")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("17+19=? ") and lines[2].startswith("3*4=? ")
    assert len(re.findall(r"\(\d+, p=\d\.\d\d\)", lines[0])) == 6    # max_new_tokens tokens, none an <|end|>
    assert "the answer is 36" in lines[1] and "the answer is 12" in lines[3]


def test_bad_command_line_prompt_is_a_one_line_error(ckpt):
    r = run_sample(ckpt, "--prompt=17+19=?|17+a")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip() == ("--prompt '17+a': unexpected character(s) 'a': prompts use digits, "
                                "+ - * / = ? , x and spaces, e.g. 17+19=?")


def test_missing_checkpoint(tmp_path):
    r = run_sample(tmp_path / "nope.pt")
    assert r.returncode == 1 and r.stderr.strip().startswith("checkpoint not found:")


def test_spaces_are_dropped_and_other_prompts_are_said_to_be_unchecked(ckpt):
    r = run_sample(ckpt, "--prompt=3 + 4 = ?|-3+4=?|7/2=?|1.5+2=?|72 - x = 34 , x = ?")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("3+4=?") and "the answer is 7" in lines[1]       # checked, as 3+4=?
    assert lines[2].startswith("note: a negative operand") and lines[3].startswith("-3+4=?")   # said before answering
    assert lines[4] == "not one of the task forms: not checked"
    assert lines[5].startswith("note: no single whole-number answer") and lines[6].startswith("7/2=?")
    assert lines[8].startswith("note: a decimal number") and lines[9].startswith("1.5+2=?")
    assert lines[11].startswith("72-x=34, x=?") and "the answer is 38" in lines[12]


def test_a_prompt_outside_the_training_box_is_said_so_before_the_answer(ckpt, tmp_path):
    checkpoint = torch.load(ckpt, weights_only=True)
    checkpoint["box"] = {"a_plus_b_q": [[1, 3], [1, 3]]}
    torch.save(checkpoint, tmp_path / "boxed.pt")
    r = run_sample(str(tmp_path / "boxed.pt"), "--prompt=1234+5=?|123+45=?")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == ("note: first operand has 4 digits (trained on up to 3): longer than training, a "
                        "length-generalisation test")
    assert lines[1].startswith("1234+5=?") and lines[3].startswith("123+45=?")


def test_a_completion_cut_at_block_size_says_so(ckpt):
    prompt = "1" * 24 + "+1=?"                            # 28 tokens of the 32: room for 4
    r = run_sample(ckpt, f"--prompt={prompt}")
    assert r.returncode == 0, r.stderr
    assert "cut at block_size 32: the prompt leaves room for 4 new tokens" in r.stdout


def test_top_k_below_zero_is_a_one_line_error(ckpt):
    r = run_sample(ckpt, "--top_k=-3")
    assert r.returncode == 1 and r.stderr.strip() == "config error: top_k must be >= 0, got -3"


def test_unknown_calculator_is_a_one_line_error(ckpt):
    r = run_sample(ckpt, "--calculator=checkpoint.pt")
    assert r.returncode == 1 and r.stderr.strip() == "config error: calculator must be 'exact' or '' (none), got 'checkpoint.pt'"
