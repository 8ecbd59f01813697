"""LoRA and the quantized frozen base (lora.py): the adapters start as the base, merge exactly, train alone,
give DPO and GRPO their reference when switched off and round-trip through an adapter checkpoint; the
quantization stays within its stated error bound; every training script runs with them."""
import copy
import importlib
import json
import math
import sys

import pytest
import torch
import torch.nn as nn

import train_dpo
from common import checkpoint_payload, load_checkpoint, model_from_checkpoint, save_checkpoint, setup
from lora import (LoRALinear, QuantLinear, adapter_state, adapters_off, add_lora, dequantize, lora_layers, merge,
                  quantize_int4, quantize_int8, settings, unmerge)
from model import GPT, GPTConfig
from tokenizer import get_tokenizer

from conftest import ROOT

TOK = get_tokenizer("math")
IDX = torch.randint(0, TOK.vocab_size, (3, 16), generator=torch.Generator().manual_seed(0))   # (B, T)


def tiny():
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=64, vocab_size=TOK.vocab_size, n_layer=2, n_head=2, n_embd=32, pos="rope"))


def trained(model):
    """Random B, as after some training: the adapters now change what the model computes."""
    torch.manual_seed(1)
    for m in lora_layers(model):
        nn.init.normal_(m.lora_B.weight, std=0.05)
    return model


@pytest.mark.parametrize("targets, per_block", [("attn", 2), ("mlp", 2), ("all", 4)])
def test_zero_initialised_adapters_give_exactly_the_base_logits(targets, per_block):
    model = tiny().eval()
    base_logits = model(IDX)[0]
    add_lora(model, "base.pt", rank=4, alpha=8.0, targets=targets)
    assert len(lora_layers(model)) == per_block * model.config.n_layer
    assert torch.equal(model(IDX)[0], base_logits)


def test_merged_logits_equal_unmerged_and_unmerge_gives_the_base_back():
    model = tiny().eval()
    base_logits = model(IDX)[0]
    trained(add_lora(model, "base.pt", rank=4, alpha=8.0))
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    unmerged = model(IDX)[0]
    assert not torch.allclose(unmerged, base_logits, atol=1e-3)
    merge(model)
    assert torch.allclose(model(IDX)[0], unmerged, atol=1e-5)
    unmerge(model)
    assert all(torch.allclose(v, weights[k], atol=1e-6) for k, v in model.state_dict().items())
    with adapters_off(model):
        assert torch.allclose(model(IDX)[0], base_logits, atol=1e-6)
    assert torch.allclose(model(IDX)[0], unmerged, atol=1e-6)   # on again after the with


@pytest.mark.parametrize("quantize_base", ["none", "int8", "int4"])
def test_only_adapter_parameters_get_gradients_and_the_optimizer_holds_only_them(quantize_base):
    model = trained(add_lora(tiny(), "base.pt", rank=4, alpha=8.0, quantize_base=quantize_base))
    frozen = {k: v.clone() for k, v in model.state_dict().items() if ".lora_" not in k}
    optimizer = model.configure_optimizers(0.1, 1e-2, (0.9, 0.99), "cpu")
    adapters = {n for n, _ in model.named_parameters() if ".lora_" in n}
    assert len(adapters) == 2 * 4 * model.config.n_layer
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert held == {id(p) for n, p in model.named_parameters() if n in adapters}
    model(IDX, IDX)[1].backward()
    assert {n for n, p in model.named_parameters() if p.grad is not None} == adapters
    optimizer.step()
    assert all(torch.equal(v, frozen[k]) for k, v in model.state_dict().items() if k in frozen)
    assert sum(s["exp_avg"].numel() for s in optimizer.state.values()) == sum(
        p.numel() for n, p in model.named_parameters() if n in adapters)


def test_the_dpo_reference_of_a_lora_policy_is_its_base_with_the_adapters_off():
    rt = setup("cpu", "float32", 0)
    model = tiny()
    frozen_copy = copy.deepcopy(model).eval().requires_grad_(False)
    policy = trained(add_lora(model, "base.pt", rank=4, alpha=8.0))
    pairs = [("12+34=?", "46<|end|>", "47<|end|>"), ("5-7=?", "-2<|end|>", "2<|end|>")]
    batch = train_dpo.encode_pairs(TOK, pairs, 64, "cpu")
    from_adapters_off = torch.stack(train_dpo.reference_logps(policy, "train", [0, 1], *batch, rt))
    from_copy = torch.stack(train_dpo.reference_logps(frozen_copy, "train", [0, 1], *batch, rt))
    assert torch.allclose(from_adapters_off, from_copy, atol=1e-6)
    assert not torch.allclose(torch.stack(train_dpo.pair_logps(policy, *batch, rt)), from_copy, atol=1e-3)


@pytest.mark.parametrize("bits", [8, 4])
def test_quantize_dequantize_error_stays_within_half_a_level(bits):
    torch.manual_seed(0)
    w = torch.randn(96, 128) * 0.02
    w[3, 5] = 1.0    # an outlier widens only its own row's (int8) or group's (int4) levels
    q, scale = quantize_int8(w) if bits == 8 else quantize_int4(w)
    # s of every weight: its row's scale (int8), its group of 32 inputs' (int4)
    s = scale[:, None].expand_as(w) if bits == 8 else scale.repeat_interleave(32, dim=1)
    err = (dequantize(q, scale) - w).abs()
    assert (err <= s / 2 * (1 + 1e-5)).all()
    assert (err / (s / 2)).max() > 0.9                                       # and the bound is tight
    limit = 1 / 254 if bits == 8 else 1 / 14                                  # of the row's / group's largest |w|
    largest = w.abs().amax(dim=1, keepdim=True) if bits == 8 else w.abs().view(96, 4, 32).amax(dim=2).repeat_interleave(32, dim=1)
    assert (err <= largest * limit * (1 + 1e-5)).all()
    assert q.numel() * q.element_size() == w.numel() * bits // 8           # 1 byte a weight, or half of one
    assert err[3].max() > 10 * err[4].max() if bits == 8 else err[3, :32].max() > 10 * err[3, 32:].max()


@pytest.mark.parametrize("bits", [8, 4])
def test_a_quantized_layer_computes_and_differentiates_as_its_dequantized_linear(bits):
    torch.manual_seed(0)
    layer = QuantLinear(nn.Linear(64, 48), bits)
    reference = layer.dequantized()
    x = torch.randn(2, 5, 64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    y, y_ref = layer(x), reference(x_ref)
    (y * torch.arange(48.0)).sum().backward()
    (y_ref * torch.arange(48.0)).sum().backward()
    assert torch.allclose(y, y_ref, atol=1e-6) and torch.allclose(x.grad, x_ref.grad, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):                      # the training dtype on this CPU
        assert layer(x).dtype == torch.bfloat16


def test_gradient_checkpointing_gives_the_same_gradients():
    model = trained(add_lora(tiny(), "base.pt", rank=4, alpha=8.0, quantize_base="int8"))
    grads = []
    for recompute in (False, True):
        model.grad_checkpoint = recompute
        model.zero_grad()
        model(IDX, IDX)[1].backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads)) and len(grads[0]) == len(grads[1]) > 0


@pytest.mark.parametrize("quantize_base", ["none", "int8"])
def test_an_adapter_checkpoint_round_trips_unmerged_and_merged(tmp_path, quantize_base):
    base = tiny()
    base_path = str(tmp_path / "base.pt")
    save_checkpoint(base_path, **checkpoint_payload(base, torch.optim.AdamW(base.parameters()), {}, 0,
                                                    {"tokenizer": "math"}))
    model = trained(add_lora(base, base_path, rank=4, alpha=8.0, quantize_base=quantize_base)).eval()
    path = str(tmp_path / "adapters.pt")
    optimizer = model.configure_optimizers(0.0, 1e-3, (0.9, 0.99), "cpu")
    save_checkpoint(path, **checkpoint_payload(model, optimizer, {}, 3, {"tokenizer": "math"}, stage="sft"))
    ckpt = load_checkpoint(path)
    assert "model" not in ckpt and set(ckpt["adapters"]) == set(adapter_state(model))
    assert all(".lora_" in k for k in ckpt["adapters"])
    assert ckpt["lora"] == dict(base=base_path, rank=4, alpha=8.0, dropout=0.0, targets="all",
                                quantize_base=quantize_base)
    logits = model(IDX)[0]
    unmerged = model_from_checkpoint(ckpt, "cpu", merge_lora=False).eval()
    assert len(lora_layers(unmerged)) == 8 and torch.equal(unmerged(IDX)[0], logits)
    merged = model_from_checkpoint(ckpt, "cpu").eval()
    assert not any(isinstance(m, (LoRALinear, QuantLinear)) for m in merged.modules())
    assert torch.allclose(merged(IDX)[0], logits, atol=1e-5)
    GPT(merged.config).load_state_dict(merged.state_dict())                 # a plain GPT's weights

    (tmp_path / "base.pt").unlink()
    with pytest.raises(SystemExit) as e:
        load_checkpoint(path)
    assert str(e.value).startswith(f"{path} holds LoRA adapters of the base checkpoint {base_path}, which is not "
                                   "there") and "\n" not in str(e.value)


@pytest.mark.parametrize("key, value, message", [
    ("lora_rank", -1, "lora_rank must be >= 0"),
    ("lora_targets", "ffn", "lora_targets='ffn'; allowed: attn, mlp, all"),
    ("quantize_base", "int2", "quantize_base='int2'; allowed: none, int8, int4"),
    ("lora_alpha", 0.0, "lora_alpha must be > 0"),
    ("lora_dropout", 1.0, "lora_dropout must be in [0, 1)"),
])
def test_bad_lora_keys_are_one_line_errors(key, value, message):
    config = dict(lora_rank=8, lora_alpha=16.0, lora_dropout=0.0, lora_targets="all", quantize_base="none")
    with pytest.raises(SystemExit) as e:
        settings(config | {key: value})
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_a_quantized_base_needs_adapters():
    with pytest.raises(SystemExit, match="set lora_rank > 0"):
        settings(dict(lora_rank=0, lora_alpha=16.0, lora_dropout=0.0, lora_targets="all", quantize_base="int8"))


# -----------------------------------------------------------------------------
# the training scripts with LoRA, a couple of steps each on the tiny data

LORA = ["--lora_rank=4", "--lora_alpha=8", "--device=cpu", "--dtype=float32"]


def main_of(script, monkeypatch, *args):
    module = importlib.reload(importlib.import_module(script))
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *args])
    module.main()
    return module


def log_rows(out_dir, split):
    rows = [json.loads(line) for line in open(out_dir / "log.jsonl")]
    return [r for r in rows if r["split"] == split]


def check_adapter_checkpoint(path, base, iter_num):
    ckpt = torch.load(path, weights_only=True)
    assert "model" not in ckpt and ckpt["lora"]["base"] == str(base) and ckpt["iter_num"] == iter_num
    trained = [v for k, v in ckpt["adapters"].items() if k.endswith("lora_B.weight")]
    assert trained and all(v.abs().sum() > 0 for v in trained)   # B moved from zero
    return ckpt


def test_sft_with_lora_an_int8_base_and_grad_checkpoint_then_resume_and_eval(data_dir, pretrained, tmp_path,
                                                                            monkeypatch, capsys):
    base = pretrained / "ckpt.pt"
    out = tmp_path / "sft"
    args = [f"--data_dir={data_dir}", f"--out_dir={out}", "--eval_interval=2", "--n_eval_problems=7",
            "--max_new_tokens=8", "--batch_size=4", "--log_interval=1", "--learning_rate=1e-2",
            "--quantize_base=int8", "--grad_checkpoint=True", *LORA]
    main_of("train_sft", monkeypatch, f"--init_from={base}", "--max_iters=2", *args)
    assert "LoRA r=4 alpha=8 on all, int8 base" in capsys.readouterr().out
    check_adapter_checkpoint(out / "ckpt.pt", base, 2)
    main_of("train_sft", monkeypatch, "--init_from=resume", "--max_iters=3", *args)
    check_adapter_checkpoint(out / "ckpt.pt", base, 3)
    assert [r["iter"] for r in log_rows(out, "train")] == [1, 2, 3]
    for merge_lora in (True, False):
        main_of("eval", monkeypatch, f"--ckpt={out / 'ckpt.pt'}", f"--data_dir={data_dir}", "--n_per_type=2",
                "--max_new_tokens=8", f"--out_dir={tmp_path / f'eval_{merge_lora}'}", "--device=cpu",
                f"--merge_lora={merge_lora}", "--n_transcripts=0")
        results = json.loads((tmp_path / f"eval_{merge_lora}" / "results.json").read_text())
        assert results["checkpoints"][0]["metrics"]["overall"]["n"] == 14


def test_dpo_with_lora_starts_at_ln2_against_its_own_base(data_dir, pretrained, tmp_path, monkeypatch, capsys):
    out = tmp_path / "dpo"
    main_of("train_dpo", monkeypatch, f"--data_dir={data_dir}", f"--init_from={pretrained / 'ckpt.pt'}",
            f"--out_dir={out}", "--pairs_file=pairs_train.jsonl", "--batch_size=4", "--max_iters=2",
            "--eval_interval=2", "--log_interval=1", "--n_val_pairs=8", "--n_eval_problems=7", "--max_new_tokens=8",
            "--rpo_alpha=0.0", "--learning_rate=1e-2", "--warmup_iters=0", *LORA)
    assert "reference" in capsys.readouterr().out
    evals = log_rows(out, "eval")
    # step 0: the adapters are zero, so policy and reference (the base, adapters off) agree on every pair
    assert evals[0]["loss"] == pytest.approx(math.log(2), abs=1e-6) and evals[0]["rewards/margins"] == 0
    assert evals[-1]["rewards/margins"] != 0
    check_adapter_checkpoint(out / "ckpt.pt", pretrained / "ckpt.pt", 2)


def test_grpo_with_lora_takes_its_kl_against_the_base_under_the_adapters(data_dir, pretrained, tmp_path, monkeypatch):
    out = tmp_path / "grpo"
    main_of("train_grpo", monkeypatch, "config/grpo_tiny.py", f"--data_dir={data_dir}",
            f"--init_from={pretrained / 'ckpt.pt'}", f"--out_dir={out}", "--max_new_tokens=24",
            "--n_eval_problems=14", "--beta=0.04", "--num_iterations=1", "--learning_rate=1e-2", "--min_lr=1e-2",
            "--truncated=penalize",   # every completion in the loss (and the KL): a tiny model never stops
            "--average_weight=1", *LORA)
    train = log_rows(out, "train")
    assert train[0]["kl"] == 0 and train[1]["kl"] > 0      # zero adapters: the policy is its reference, then moves
    check_adapter_checkpoint(out / "ckpt.pt", pretrained / "ckpt.pt", 2)
