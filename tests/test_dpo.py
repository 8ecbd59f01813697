"""DPO: the losses against /work/shared/reference/loss_vectors.md (hand-derived, cross-checked with TRL),
the completion masking, and train_dpo.py end to end on a tiny random checkpoint."""
import copy
import importlib
import json
import math
import random
import shutil
import sys

import pytest
import torch

import train_dpo
from common import checkpoint_payload, model_from_checkpoint, save_checkpoint, setup
from model import GPT, GPTConfig, token_logprobs
from tasks import completion, format_completion, make_problem, worked_solution
from train_dpo import completion_logps, dpo_loss
from tokenizer import END, get_tokenizer



BETA = 0.1
PC, PR = torch.tensor([-10.0, -20.0]), torch.tensor([-12.0, -18.0])   # policy chosen, rejected
RC, RR = torch.tensor([-11.0, -19.0]), torch.tensor([-11.5, -19.5])   # reference chosen, rejected
CHOSEN_LENGTHS, REJECTED_LENGTHS = torch.tensor([5.0, 10.0]), torch.tensor([4.0, 8.0])


def loss(loss_type="sigmoid", label_smoothing=0.0, **kw):
    return dpo_loss(PC, PR, RC, RR, BETA, loss_type, label_smoothing, **kw)


def test_sigmoid_loss():
    losses, _, _ = loss()
    assert losses.tolist() == pytest.approx([0.620957, 0.825939], abs=1e-6)
    assert losses.mean().item() == pytest.approx(0.723448, abs=1e-6)


def test_conservative_and_robust_losses():
    assert loss("sigmoid", 0.1)[0].mean().item() == pytest.approx(0.718448, abs=1e-6)
    assert loss("robust", 0.1)[0].mean().item() == pytest.approx(0.729698, abs=1e-6)
    assert torch.allclose(loss("robust", 0.0)[0], loss("sigmoid", 0.0)[0])


def test_ipo_loss_with_and_without_length_normalisation():
    with_lengths = loss("ipo", chosen_lengths=CHOSEN_LENGTHS, rejected_lengths=REJECTED_LENGTHS)[0]
    assert with_lengths.mean().item() == pytest.approx(24.906641, abs=1e-5)
    assert loss("ipo")[0].mean().item() == pytest.approx(34.25, abs=1e-5)


def test_hinge_loss_by_hand():
    # beta*delta = [0.15, -0.25]: relu(1 - 0.15) = 0.85, relu(1 + 0.25) = 1.25
    losses = loss("hinge")[0]
    assert losses.tolist() == pytest.approx([0.85, 1.25], abs=1e-6)
    big_margin = dpo_loss(torch.tensor([0.0]), torch.tensor([-20.0]), torch.zeros(1), torch.zeros(1), BETA,
                          "hinge")
    assert big_margin[0].item() == 0.0   # beta*delta = 2 > 1: no gradient once the margin is reached


def test_reward_metrics():
    _, chosen, rejected = loss()
    assert chosen.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert rejected.mean().item() == pytest.approx(0.05, abs=1e-6)
    assert (chosen - rejected).mean().item() == pytest.approx(-0.05, abs=1e-6)
    assert (chosen > rejected).float().mean().item() == 0.5


def test_gradient_wrt_policy_chosen():
    pc = PC.clone().requires_grad_(True)
    dpo_loss(pc, PR, RC, RR, BETA)[0].mean().backward()
    assert pc.grad.tolist() == pytest.approx([-0.023129, -0.028109], abs=1e-6)


def test_policy_equal_to_reference_gives_ln2_and_zero_accuracy():
    losses, chosen, rejected = dpo_loss(PC, PR, PC, PR, BETA)
    assert losses.mean().item() == pytest.approx(math.log(2), abs=1e-6)
    assert (chosen > rejected).float().mean().item() == 0.0


def test_rpo_adds_the_chosen_per_token_nll():
    # chosen lengths 5 and 10: NLL per token 10/5 = 2 and 20/10 = 2, so the loss is the sigmoid one + alpha * 2
    losses, _, _ = dpo_loss(PC, PR, RC, RR, BETA, chosen_lengths=torch.tensor([5.0, 10.0]),
                            rejected_lengths=torch.tensor([4.0, 8.0]), rpo_alpha=0.5)
    assert losses.mean().item() == pytest.approx(0.723448 + 0.5 * 2.0, abs=1e-6)


def test_reference_free_sets_reference_logps_to_zero():
    free = dpo_loss(PC, PR, RC, RR, BETA, reference_free=True)
    zeros = dpo_loss(PC, PR, torch.zeros(2), torch.zeros(2), BETA)
    for a, b in zip(free, zeros):
        assert torch.equal(a, b)


def masking_example():
    ids = torch.tensor([[1, 2, 3, 4, 5], [1, 2, 3, 6, 0]])
    mask = torch.tensor([[0, 0, 0, 1, 1], [0, 0, 0, 1, 0]], dtype=torch.bool)
    b, t, v = torch.meshgrid(torch.arange(2.0), torch.arange(5.0), torch.arange(7.0), indexing="ij")
    logits = 0.1 * (b + 1) * (t + 1) * (v - 3) + 0.05 * v ** 2 + 0.2 * t - 0.3 * b   # (2, 5, 7)
    return logits, ids, mask


def test_completion_logps_use_the_shifted_mask():
    logits, ids, mask = masking_example()
    assert completion_logps(logits, ids, mask).tolist() == pytest.approx([-3.707587, -0.406648], abs=1e-6)
    unshifted = (token_logprobs(logits, ids) * mask[:, :-1]).sum(dim=1)
    assert unshifted.tolist() == pytest.approx([-1.486141, -6.914668], abs=1e-6)


def test_masking_example_losses():
    logits, ids, mask = masking_example()
    chosen, rejected = completion_logps(logits, ids, mask).split(1)
    ref_chosen, ref_rejected = torch.tensor([-3.0]), torch.tensor([-1.0])
    sigmoid = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, BETA)[0]
    assert sigmoid.item() == pytest.approx(0.760308, abs=1e-6)
    lengths = mask.sum(dim=1).float()   # 2 and 1 completion tokens
    ipo = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, BETA, "ipo",
                   chosen_lengths=lengths[:1], rejected_lengths=lengths[1:])[0]
    assert ipo.item() == pytest.approx(35.368538, abs=1e-5)


# -----------------------------------------------------------------------------
# train_dpo.py end to end, in process (the module is reloaded so every run starts from its defaults)

def problems(n, seed):
    rng = random.Random(seed)
    return [make_problem(t, rng, ((1, 2), (1, 1))) for _ in range(n) for t in ("a_plus_b_q", "a_minus_b_q")]


def pair_row(p):
    rejected = format_completion(p.answer + 1, worked_solution(p))
    return {"prompt": p.prompt, "chosen": completion(p), "rejected": rejected, "Q": p.prompt, "A": str(p.answer),
            "type": p.type, "negative": "near_miss"}


def seed_row(p):
    return {"positive": f"{p.prompt} The answer is {p.answer}.", "negative": f"{p.prompt} Sorry, I do not know!",
            "Q": p.prompt, "A": str(p.answer), "type": p.type}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def make_data(root):
    """A tiny dataset and a random tiny "SFT" checkpoint under root."""
    d = root / "data"
    d.mkdir()
    (d / "meta.json").write_text(json.dumps({"tokenizer": "math", "vocab_size": 260}))
    write_jsonl(d / "pairs_train.jsonl", [pair_row(p) for p in problems(16, 0)])
    write_jsonl(d / "pairs_val.jsonl", [pair_row(p) for p in problems(4, 1)])
    write_jsonl(d / "pairs_seed.jsonl", [seed_row(p) for p in problems(8, 0)])
    write_jsonl(d / "sft_val.jsonl", [{"prompt": p.prompt, "completion": completion(p), "Q": p.prompt,
                                       "A": str(p.answer), "type": p.type} for p in problems(2, 1)])
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=64, vocab_size=260, n_layer=2, n_head=2, n_embd=32))
    optimizer = model.configure_optimizers(0.0, 1e-3, (0.9, 0.99), "cpu")
    save_checkpoint(str(root / "sft.pt"), **checkpoint_payload(model, optimizer, {}, 0, {"tokenizer": "math"}))
    return root


@pytest.fixture
def data(tmp_path):
    return make_data(tmp_path)


def run_dpo(monkeypatch, root, *overrides, out="out"):
    """train_dpo.main() on root's data for 4 iterations; returns the rows of its log.jsonl."""
    importlib.reload(train_dpo)
    args = [f"--data_dir={root / 'data'}", f"--init_from={root / 'sft.pt'}", f"--out_dir={root / out}",
            "--device=cpu", "--batch_size=4", "--max_iters=4", "--eval_interval=2", "--log_interval=1",
            "--n_val_pairs=6", "--n_eval_problems=4", "--max_new_tokens=8", "--warmup_iters=1",
            "--learning_rate=3e-3", "--pairs_file=pairs_train.jsonl", "--rpo_alpha=0.0"]   # no RPO: ln 2 at step 0
    monkeypatch.setattr(sys, "argv", ["train_dpo.py", *args, *overrides])
    train_dpo.main()
    return [json.loads(line) for line in open(root / out / "log.jsonl")]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """One uninterrupted 4-iteration run, shared by the tests that compare other runs with it."""
    root = make_data(tmp_path_factory.mktemp("dpo"))
    with pytest.MonkeyPatch.context() as monkeypatch:
        log = run_dpo(monkeypatch, root)
    return root, log


TRL_KEYS = {"loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
            "logps/chosen", "logps/rejected"}


def test_end_to_end_logs_and_checkpoint(straight):
    root, log = straight
    train = [r for r in log if r["split"] == "train"]
    evals = [r for r in log if r["split"] == "eval"]
    assert [r["iter"] for r in train] == [1, 2, 3, 4] and [r["iter"] for r in evals] == [0, 2, 4]
    assert all(TRL_KEYS <= set(r) for r in train + evals)
    assert set(evals[0]["accuracy"]) == {"a_plus_b_q", "a_minus_b_q", "overall"}
    # step 0: the policy is the reference, so the loss is ln 2 and no pair is preferred yet
    assert evals[0]["loss"] == pytest.approx(math.log(2), abs=1e-6) and evals[0]["rewards/accuracies"] == 0.0
    ckpt = torch.load(root / "out" / "ckpt.pt", weights_only=True)
    assert ckpt["iter_num"] == 4 and ckpt["tokenizer"] == "math"
    assert ckpt["reference_from"] == str(root / "sft.pt") and ckpt["config"]["beta"] == 1.0


def test_val_pairs_are_of_the_training_kind(data, monkeypatch, capsys):
    # on-policy training pairs are checked on held-out on-policy pairs, not on the synthetic pairs_val.jsonl
    pairs = data / "data"
    (pairs / "pairs_onpolicy_train.jsonl").write_text((pairs / "pairs_train.jsonl").read_text())
    (pairs / "pairs_onpolicy_val.jsonl").write_text((pairs / "pairs_val.jsonl").read_text())
    run_dpo(monkeypatch, data, "--pairs_file=pairs_onpolicy_train.jsonl", "--max_iters=1")
    assert f"val pairs from {pairs / 'pairs_onpolicy_val.jsonl'}" in capsys.readouterr().out
    run_dpo(monkeypatch, data, "--pairs_file=pairs_seed.jsonl", "--max_iters=1", out="seed")
    assert f"val pairs from {pairs / 'pairs_val.jsonl'}" in capsys.readouterr().out


def test_precomputed_reference_gives_the_same_run(straight, monkeypatch):
    root, frozen = straight
    precomputed = run_dpo(monkeypatch, root, "--precompute_ref=True", out="precomputed")
    assert len(precomputed) == len(frozen)
    for a, b in zip(frozen, precomputed):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5), (a, b)


def test_resume_continues_the_same_run(straight, monkeypatch):
    root, log = straight
    run_dpo(monkeypatch, root, "--max_iters=2", "--lr_decay_iters=4", out="resumed")   # the same schedule
    resumed = run_dpo(monkeypatch, root, "--init_from=resume", out="resumed")
    weights = torch.load(root / "out" / "ckpt.pt", weights_only=True)["model"]
    resumed_weights = torch.load(root / "resumed" / "ckpt.pt", weights_only=True)["model"]
    assert all(torch.allclose(weights[k], resumed_weights[k], atol=1e-6) for k in weights)
    losses = {r["iter"]: r["loss"] for r in log if r["split"] == "train"}
    assert {r["iter"]: r["loss"] for r in resumed if r["split"] == "train"} == pytest.approx(losses, abs=1e-6)


def test_dpo_steps_teach_the_preference(data):
    rt = setup("cpu", "float32", 0)
    model = model_from_checkpoint(torch.load(data / "sft.pt", weights_only=True), "cpu")
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    tok = get_tokenizer("math")
    pairs, _ = train_dpo.read_pairs(str(data / "data" / "pairs_train.jsonl"), tok, 64)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(20):
        losses, metrics = train_dpo.dpo_batch(model, reference, "train", pairs, range(8), tok, 64, rt,
                                              {"beta": 0.1, "loss_type": "sigmoid"})
        losses.mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    assert losses.mean().item() < 0.5 and metrics["rewards/accuracies"].mean().item() == 1.0


def test_reference_free_ipo_run(data, monkeypatch):
    log = run_dpo(monkeypatch, data, "--loss_type=ipo", "--reference_free=True", "--max_iters=1", "--beta=0.5")
    # with the reference's log-probs taken as 0 the rewards are the policy's own log-probs times beta
    assert log[0]["rewards/chosen"] == pytest.approx(0.5 * log[0]["logps/chosen"], rel=1e-5)


def test_seed_format(data, monkeypatch):
    path = data / "data" / "pairs_seed.jsonl"
    pairs, skipped = train_dpo.read_pairs(str(path), get_tokenizer("math"), 64)
    prompt, chosen, rejected = pairs[0]
    row = json.loads(path.read_text().splitlines()[0])
    assert prompt == row["Q"] and chosen == row["positive"][len(prompt):] + END   # the format has no end marker
    assert rejected == row["negative"][len(prompt):] + END
    assert len(pairs) == 16 and skipped == []
    log = run_dpo(monkeypatch, data, "--pairs_file=pairs_seed.jsonl", "--max_iters=2")
    assert [r["iter"] for r in log if r["split"] == "train"] == [1, 2]


def test_pairs_longer_than_block_size_are_skipped_and_counted(data, monkeypatch, capsys):
    rows = [pair_row(p) for p in problems(4, 0)]
    rows[1]["rejected"] = "9" * 80 + END
    write_jsonl(data / "data" / "pairs_train.jsonl", rows)
    run_dpo(monkeypatch, data, "--max_iters=1")
    assert "pairs_train.jsonl: skipped 1 pairs longer than block_size 64 (lines 2)" in capsys.readouterr().out


BAD_ROWS = {
    "chosen == rejected": ({"prompt": "1+1=?", "chosen": "2" + END, "rejected": "2" + END}, "chosen == rejected"),
    "empty completion": ({"prompt": "1+1=?", "chosen": "2" + END, "rejected": ""}, "empty prompt or completion"),
    "no shared prefix": ({"positive": "1+1=? 2", "negative": "What? 3", "Q": "1+1=?"}, "must both start with Q"),
    "seed format, empty": ({"positive": "1+1=?", "negative": "1+1=? 3", "Q": "1+1=?"},
                           "empty prompt or completion"),
    "seed format without Q": ({"positive": "1+1=? 2", "negative": "1+1=? 3"}, "missing key(s) Q"),
    "no completions": ({"prompt": "1+1=?", "chosen": "2" + END}, "missing key(s) rejected"),
    "not a string": ({"prompt": "1+1=?", "chosen": 2, "rejected": "3"}, "must be strings"),
}


@pytest.mark.parametrize("case", BAD_ROWS)
def test_bad_pairs_are_one_line_errors_with_the_line_number(data, monkeypatch, case):
    bad, message = BAD_ROWS[case]
    path = data / "data" / "pairs_train.jsonl"
    write_jsonl(path, [pair_row(p) for p in problems(1, 0)] + [bad])   # line 3: rows 1 and 2 are fine
    with pytest.raises(SystemExit) as e:
        run_dpo(monkeypatch, data)
    assert str(e.value).startswith(f"{path}:3: ") and message in str(e.value) and "\n" not in str(e.value)


def test_tokenizer_mismatch_is_an_error(data, monkeypatch):
    (data / "data" / "meta.json").write_text(json.dumps({"tokenizer": "gpt2", "vocab_size": 50260}))
    with pytest.raises(SystemExit, match="tokenizer mismatch: checkpoint .*sft.pt uses 'math'"):
        run_dpo(monkeypatch, data)


def test_resume_needs_a_dpo_checkpoint(data, monkeypatch):
    (data / "out").mkdir()
    shutil.copy(data / "sft.pt", data / "out" / "ckpt.pt")
    with pytest.raises(SystemExit, match="not written by train_dpo.py"):
        run_dpo(monkeypatch, data, "--init_from=resume")


@pytest.mark.parametrize("override, message", [
    ("--loss_type=kto", "loss_type='kto'"), ("--beta=0", "beta must be > 0"),
    ("--label_smoothing=0.5", "label_smoothing must be in"),
    ("--loss_type=ipo --label_smoothing=0.1", "label_smoothing applies")])
def test_bad_config_is_an_error(data, monkeypatch, override, message):
    with pytest.raises(SystemExit, match=message):
        run_dpo(monkeypatch, data, *override.split())
