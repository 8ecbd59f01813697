import json
import os

import numpy as np
import pytest
import torch

from common import (get_lr, save_checkpoint, load_checkpoint, read_jsonl, MetricsLog, check_data, check_out_dir,
                    read_meta, read_problems, setup, zero_unused_tokens)
import common
from batches import unused_token_ids
from model import GPT, GPTConfig
from generation import encode_completions
from configurator import configure
from tokenizer import get_tokenizer, THINK, END_THINK, END, EOT


# ---------------------------------------------------------------- tokenizer

def test_math_tokenizer_round_trips_and_keeps_digits_apart():
    tok = get_tokenizer("math")
    text = f"345+678=?{THINK}5+8+0=13{END_THINK}1023{END}{EOT}"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.encode("1023") == [ord(c) for c in "1023"]  # one token per digit
    for special in (THINK, END_THINK, END, EOT):
        assert len(tok.encode(special)) == 1
    assert tok.decode_tokens(tok.encode(f"7{END}")) == ["7", END]
    assert tok.vocab_size == 260


def test_unknown_tokenizer_is_a_one_line_error():
    with pytest.raises(SystemExit, match="unknown tokenizer 'bpe'"):
        get_tokenizer("bpe")


# ---------------------------------------------------------------- configurator

def _defaults():
    return dict(lr=1e-3, max_iters=100, name="small", compile=False, types=("a", "b"))


def test_overrides_from_file_and_command_line(tmp_path):
    cfg = tmp_path / "c.py"
    cfg.write_text("max_iters = 7\nname = 'tiny'\n")
    g = _defaults()
    out = configure(g, [str(cfg), "--lr=1", "--compile=True", "--types=('c',)", "--name=cpu"])
    assert g["max_iters"] == 7 and g["lr"] == 1.0 and isinstance(g["lr"], float)
    assert g["compile"] is True and g["types"] == ("c",) and g["name"] == "cpu"
    assert out == g


@pytest.mark.parametrize("argv, message", [
    (["--nope=1"], "unknown key 'nope'; valid keys: compile, lr, max_iters, name, types"),
    (["--max_iters=1.5"], "max_iters must be int"),
    (["--compile=1"], "compile must be bool"),
    (["--lr"], "must look like --key=value"),
    (["missing_config.py"], "config file 'missing_config.py' not found"),
])
def test_bad_config_is_a_one_line_error(argv, message):
    with pytest.raises(SystemExit, match=message.replace("(", r"\(").replace(")", r"\)")):
        configure(_defaults(), argv)


def test_none_only_where_the_default_is_none(tmp_path):
    with pytest.raises(SystemExit, match=r"config error \(--max_iters=None\): max_iters cannot be None; its default "
                                         r"is 100"):
        configure(_defaults(), ["--max_iters=None"])
    cfg = tmp_path / "c.py"
    cfg.write_text("name = None\n")
    with pytest.raises(SystemExit, match="name cannot be None"):
        configure(_defaults(), [str(cfg)])
    assert configure(dict(_defaults(), weights=None), ["--weights=None"])["weights"] is None
    assert configure(dict(_defaults(), weights=None), ["--weights={'a': 1}"])["weights"] == {"a": 1}


def test_a_string_key_takes_number_like_text_as_text():
    assert configure(_defaults(), ["--name=2024"])["name"] == "2024"
    assert configure(_defaults(), ["--name=1e-3"])["name"] == "1e-3"
    assert configure(_defaults(), ["--name='quoted'"])["name"] == "quoted"


RANGES = dict(batch_size=64, block_size=128, gradient_accumulation_steps=1, eval_interval=250, log_interval=25,
              max_iters=1000, max_new_tokens=100, temperature=1.0, top_k=0, top_p=1.0, learning_rate=3e-4,
              dropout=0.0, n_layer=4)


@pytest.mark.parametrize("arg, message", [
    ("--batch_size=0", "batch_size must be >= 1, got 0"), ("--batch_size=-4", "batch_size must be >= 1, got -4"),
    ("--block_size=0", "block_size must be >= 1"), ("--gradient_accumulation_steps=0", "gradient_accumulation_steps"),
    ("--eval_interval=0", "eval_interval must be >= 1"), ("--log_interval=0", "log_interval must be >= 1"),
    ("--max_iters=-1", "max_iters must be >= 0"), ("--max_new_tokens=0", "max_new_tokens must be >= 1"),
    ("--n_layer=0", "n_layer must be >= 1"), ("--temperature=-1", "temperature must be >= 0, got -1.0"),
    ("--top_k=-3", "top_k must be >= 0, got -3"), ("--top_p=0", r"top_p must be in \(0, 1\], got 0.0"),
    ("--top_p=1.5", r"top_p must be in \(0, 1\]"), ("--learning_rate=0", "learning_rate must be > 0"),
    ("--dropout=1", "dropout must be below 1"),
])
def test_shared_ranges_are_one_line_errors(arg, message):
    with pytest.raises(SystemExit, match=f"config error: {message}") as e:
        configure(dict(RANGES), [arg])
    assert "\n" not in str(e.value)


def test_values_at_the_edge_of_their_range_pass():
    config = configure(dict(RANGES), ["--max_iters=0", "--temperature=0", "--top_p=1", "--batch_size=1"])
    assert (config["max_iters"], config["temperature"], config["top_p"], config["batch_size"]) == (0, 0.0, 1.0, 1)


def test_unknown_key_in_a_config_file(tmp_path):
    cfg = tmp_path / "c.py"
    cfg.write_text("learning_rat = 3e-4\n")
    with pytest.raises(SystemExit, match="unknown key 'learning_rat'"):
        configure(_defaults(), [str(cfg)])


# ---------------------------------------------------------------- schedule, checkpoints, files

def test_lr_schedule_warms_up_then_decays_to_min():
    lrs = [get_lr(it, 1.0, 0.1, 10, 100) for it in range(120)]
    assert lrs[0] < lrs[5] < lrs[10]
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[55] == pytest.approx(0.1 + 0.5 * 0.9)  # half way through the cosine
    assert lrs[100] == pytest.approx(0.1) and lrs[119] == 0.1


def test_checkpoint_is_written_atomically_and_loaded_weights_only(tmp_path, monkeypatch):
    path = str(tmp_path / "ckpt.pt")
    save_checkpoint(path, model={"w": torch.ones(2)}, model_args={}, tokenizer="math", iter_num=3)
    assert not os.path.exists(path + ".tmp")

    def killed_mid_write(obj, f):
        open(f, "wb").write(b"partial")
        raise KeyboardInterrupt
    monkeypatch.setattr(torch, "save", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model={"w": torch.zeros(2)}, model_args={}, tokenizer="math", iter_num=4)
    ckpt = load_checkpoint(path)  # the old checkpoint is intact
    assert ckpt["iter_num"] == 3 and torch.equal(ckpt["model"]["w"], torch.ones(2))


def test_missing_and_corrupt_checkpoints_are_one_line_errors(tmp_path):
    with pytest.raises(SystemExit, match="checkpoint not found"):
        load_checkpoint(str(tmp_path / "nope.pt"))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit, match="could not load checkpoint"):
        load_checkpoint(str(bad))
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(SystemExit, match=r"could not load checkpoint .*empty.pt: the file is empty \(0 bytes\)"):
        load_checkpoint(str(empty))
    no_tokenizer = str(tmp_path / "no_tokenizer.pt")
    save_checkpoint(no_tokenizer, model={}, model_args={})
    with pytest.raises(SystemExit, match="no_tokenizer.pt is not a checkpoint of nanomath's training scripts: "
                                         "no tokenizer"):
        load_checkpoint(no_tokenizer)


def test_a_checkpoint_must_fit_the_data():
    meta = {"tokenizer": "math", "vocab_size": 260}
    with pytest.raises(SystemExit, match="tokenizer mismatch: checkpoint a.pt uses 'gpt2' but data/small/meta.json"):
        check_data("gpt2", 50260, meta, "a.pt", "data/small")
    with pytest.raises(SystemExit, match="vocabulary mismatch: checkpoint a.pt embeds 100 token ids but "
                                         "data/small/meta.json has 260"):
        check_data("math", 100, meta, "a.pt", "data/small")
    check_data("math", 260, meta, "a.pt", "data/small")


def test_malformed_or_incomplete_meta_json(tmp_path):
    (tmp_path / "meta.json").write_text('{"tokenizer": "math",\n')
    with pytest.raises(SystemExit, match=r"meta.json:2: malformed JSON \(.*\): regenerate the data"):
        read_meta(str(tmp_path))
    (tmp_path / "meta.json").write_text('{"tokenizer": "math"}')
    with pytest.raises(SystemExit, match="meta.json: no vocab_size: regenerate the data"):
        read_meta(str(tmp_path))


def test_a_fresh_run_does_not_replace_a_checkpoint(tmp_path):
    check_out_dir(str(tmp_path), resuming=False, overwrite=False)       # nothing there yet
    (tmp_path / "ckpt.pt").write_bytes(b"x")
    with pytest.raises(SystemExit, match="ckpt.pt exists: --init_from=resume continues that run, --overwrite=True "
                                         "replaces it, or pass another --out_dir"):
        check_out_dir(str(tmp_path), resuming=False, overwrite=False)
    check_out_dir(str(tmp_path), resuming=True, overwrite=False)
    check_out_dir(str(tmp_path), resuming=False, overwrite=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_is_a_one_line_error():
    with pytest.raises(SystemExit, match="device='cuda' but this torch has no CUDA device: use --device=cpu"):
        setup("cuda", "float32")


@pytest.mark.parametrize("caps, bf16_gflops, expected", [
    ({"avx512_bf16": True}, 400.0, "bfloat16"),      # AMX tiles or AMD EPYC: bf16 matmuls much faster
    ({"avx512_bf16": True}, 130.0, "float32"),       # a Xeon VM with AVX512-BF16 but no AMX: half fp32's speed
    ({"avx512_bf16": True}, 280.0, "float32"),       # under 1.2x fp32's 250: not worth bf16's rounding
    ({}, 400.0, "float32"),                          # no bf16 instructions: never timed, fp32
])
def test_auto_dtype_on_a_cpu_takes_bf16_only_where_its_matmul_is_faster(monkeypatch, caps, bf16_gflops, expected):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps)
    monkeypatch.setattr(common, "matmul_flops", lambda dtype, *a: 1e9 * (bf16_gflops if dtype == "bfloat16" else 250.0))
    assert common.auto_dtype("cpu") == expected
    assert setup("cpu", "auto", 0).dtype == expected


def test_auto_dtype_under_ddp_takes_rank_0s_choice(monkeypatch):
    # a process group of one (gloo): the broadcast runs and keeps rank 0's measured choice
    for key, value in dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                           MASTER_PORT="29517").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": True})
    monkeypatch.setattr(common, "matmul_flops", lambda dtype, *a: 2e11 if dtype == "bfloat16" else 1e11)
    rt = setup("cpu", "auto", 0)
    try:
        assert rt.ddp and rt.dtype == "bfloat16"
    finally:
        common.teardown(rt)


def test_read_jsonl_names_the_bad_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"prompt": "1+1=?"}\n{"prompt": \n')
    with pytest.raises(SystemExit, match=r"x.jsonl:2: malformed JSON"):
        read_jsonl(str(path))
    path.write_text('{"prompt": "1+1=?"}\n{"completion": "2"}\n')
    with pytest.raises(SystemExit, match=r"x.jsonl:2: missing key\(s\) prompt"):
        read_jsonl(str(path), ("prompt",))
    # problems too, through tasks.problem_from_row, blank lines counted
    path.write_text('{"Q": "1+1=?", "A": "2", "type": "a_plus_b_q"}\n\n'
                    '{"Q": "1+1=?", "A": "two", "type": "a_plus_b_q"}\n')
    with pytest.raises(SystemExit, match=r"x.jsonl:3: A 'two' \(Q '1\+1=\?'\) must be an integer"):
        read_problems(str(path))
    path.write_text('{"Q": "1+1=?", "A": "2", "type": "a_times_b_q"}\n')
    with pytest.raises(SystemExit, match=r"x.jsonl:1: Q '1\+1=\?' is not a a_times_b_q prompt"):
        read_problems(str(path))
    path.write_text("")
    with pytest.raises(SystemExit, match="is empty"):
        read_jsonl(str(path))


def test_metrics_log_skips_a_cut_off_last_line_on_resume(tmp_path, capsys):
    log = MetricsLog(str(tmp_path))
    log.write(iter=10, split="train", loss=1.0)
    with open(tmp_path / "log.jsonl", "a") as f:
        f.write('{"iter": 20, "split": "tr')                         # killed while writing
    resumed = MetricsLog(str(tmp_path), resume_iter=20)
    resumed.write(iter=20, split="train", loss=0.5)
    rows = [json.loads(line) for line in open(tmp_path / "log.jsonl")]
    assert [(r["iter"], r["loss"]) for r in rows] == [(10, 1.0), (20, 0.5)]
    assert "dropped the cut-off last line" in capsys.readouterr().out
    with open(tmp_path / "log.jsonl", "a") as f:
        f.write('{"iter": 2\n{"iter": 30, "split": "train"}\n')    # a bad line before the last is not a cut-off
    with pytest.raises(SystemExit, match=r"log.jsonl:3: malformed JSON"):
        MetricsLog(str(tmp_path), resume_iter=20)


def test_metrics_log_drops_rows_past_the_resumed_iteration(tmp_path):
    log = MetricsLog(str(tmp_path))
    for it in (10, 20, 30):
        log.write(iter=it, split="train", loss=1.0)
        log.write(iter=it, split="eval", val_loss=1.0)
    resumed = MetricsLog(str(tmp_path), resume_iter=20)
    resumed.write(iter=20, split="eval", val_loss=0.5)  # the resumed run evaluates its first step again
    rows = [json.loads(line) for line in open(tmp_path / "log.jsonl")]
    assert [(r["iter"], r["split"]) for r in rows] == [(10, "train"), (10, "eval"), (20, "train"), (20, "eval")]
    assert rows[-1]["val_loss"] == 0.5


def test_encode_completions_masks_prompt_and_padding():
    tok = get_tokenizer()
    idx, mask, places = encode_completions(tok, ["1+2=?", "10+20=?"], [f"3{END}", f"30{END}"], block_size=32)
    assert idx.shape == mask.shape == (2, 10) and places.shape == (2, 10, 2)
    assert places[1, :7, 0].tolist() == [2, 1, 0, 2, 1, 0, 0] and places[0, 7:].tolist() == [[0, 0]] * 3
    assert mask[0].tolist() == [False] * 5 + [True] * 2 + [False] * 3
    assert mask[1].tolist() == [False] * 7 + [True] * 3
    assert tok.decode(idx[1][mask[1]].tolist()) == f"30{END}"
    with pytest.raises(SystemExit, match="7 tokens is longer than block_size 6"):
        encode_completions(tok, ["1+2=?"], [f"3{END}"], block_size=6)


def test_tokens_the_data_never_holds_keep_a_zero_embedding(tmp_path):
    np.array([1, 2, 3, 1, 2], dtype=np.uint16).tofile(tmp_path / "train.bin")
    unused = unused_token_ids(str(tmp_path), 8)
    assert unused == [0, 4, 5, 6, 7]
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=8, vocab_size=8, n_layer=1, n_head=1, n_embd=8, pos="rope"))
    zero_unused_tokens(model, unused)
    optimizer = model.configure_optimizers(0.1, 1e-2, (0.9, 0.99), "cpu")
    x, y = torch.tensor([[1, 2, 3, 1]]), torch.tensor([[2, 3, 1, 2]])
    for _ in range(3):                        # the output softmax pushes every row, the used ones' inputs pull theirs
        model(x, y)[1].backward()
        optimizer.step()
        optimizer.zero_grad()
    weight = model.transformer.wte.weight
    assert (weight[unused] == 0).all() and (weight[[1, 2, 3]] != 0).all()
    assert model.lm_head.weight is weight     # tied: the unused tokens' logits stay 0


def test_descends_from_follows_the_recorded_init_from_and_a_resume_s_reference(tmp_path):
    model = GPT(GPTConfig(block_size=16, vocab_size=260, n_layer=1, n_head=2, n_embd=16))

    def write(name, **record):
        path = str(tmp_path / name)
        save_checkpoint(path, model=model.state_dict(), model_args={}, tokenizer="math", **record)
        return path

    sft = write("sft.pt", config={"init_from": "scratch"})
    dpo = write("dpo.pt", config={"init_from": sft})
    grpo = write("grpo.pt", config={"init_from": "resume"}, reference_from=dpo)   # a resumed run
    stranger = write("other.pt", config={"init_from": "scratch"})
    assert common.descends_from(grpo, sft) and common.descends_from(grpo, dpo) and common.descends_from(sft, sft)
    assert not common.descends_from(grpo, stranger) and not common.descends_from(sft, dpo)
