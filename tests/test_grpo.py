"""GRPO: every number of the GRPO section of /work/shared/reference/loss_vectors.md, the temperature
and alignment of the log-probs, and end-to-end runs of train_grpo.py on a tiny random checkpoint."""
import importlib
import itertools
import json
import random
import re
import sys

import pytest
import torch

from common import checkpoint_payload, load_checkpoint, model_from_checkpoint, read_meta, save_checkpoint
from generation import generate
from model import GPT, GPTConfig, token_logprobs
from tasks import TASK_TYPES, Problem, completion, length_cells, make_problem, problem_length
from tokenizer import get_tokenizer
from task_mix import auto_weights, check_weights, draw_problems, rollout_limit, without_exhausted_cells
from batches import rollout_batch
from places import completion_places
from train_grpo import average_state, compute_advantages, grpo_loss, k3_kl, reward


# ---------------------------------------------------------------- advantages

REWARDS = torch.tensor([1., 0, 1, 0, 1, 1, 1, 0, 2, 2, 2, 2])


def test_group_advantages_and_zero_std_fraction():
    adv, zero_std = compute_advantages(REWARDS, 4, "group")
    want = [0.865875, -0.865875, 0.865875, -0.865875, 0.4999, 0.4999, 0.4999, -1.4997, 0, 0, 0, 0]
    assert adv.tolist() == pytest.approx(want, abs=1e-6)
    assert zero_std == pytest.approx(1 / 3)


def test_batch_scaled_and_unscaled_advantages():
    adv, _ = compute_advantages(REWARDS, 4, "batch")
    want = [0.630468, -0.630468, 0.630468, -0.630468, 0.315234, 0.315234, 0.315234, -0.945702, 0, 0, 0, 0]
    assert adv.tolist() == pytest.approx(want, abs=1e-6)
    adv, _ = compute_advantages(REWARDS, 4, "none")   # Dr. GRPO
    assert adv.tolist() == pytest.approx([.5, -.5, .5, -.5, .25, .25, .25, -.75, 0, 0, 0, 0])


# ---------------------------------------------------------------- the loss

LOGP = [[-1.0, -0.5, -2.0], [-0.3, -1.4, 0.0]]
OLD = [[-1.1, -0.4, -2.5], [-0.3, -1.0, 0.0]]
REF = [[-1.2, -0.6, -2.1], [-0.4, -1.1, 0.0]]
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)


@pytest.mark.parametrize("loss_type, want", [("grpo", -0.322598), ("dapo", -0.477337), ("dr_grpo", -0.298336)])
def test_loss_values_and_metrics(loss_type, want):
    loss, metrics = grpo_loss(torch.tensor(LOGP), torch.tensor(OLD), torch.tensor(REF), torch.tensor([1.0, -0.5]),
                              MASK, loss_type, 0.2, 0.28, 0.04, max_len=4)
    assert loss.item() == pytest.approx(want, abs=1e-6)
    assert metrics["kl"] == pytest.approx(0.016620, abs=1e-6)
    assert (metrics["clip_low"], metrics["clip_high"], metrics["clip_any"]) == pytest.approx((0.2, 0.2, 0.4))


@pytest.mark.parametrize("loss_type, want", [("grpo", -0.322732), ("dapo", -0.477431), ("dr_grpo", -0.298394)])
def test_trl_bias_corrected_kl(loss_type, want):
    # TRL 1.16's default use_bias_correction_kl=True: each token's k3 times its ratio (loss_vectors.md)
    loss, _ = grpo_loss(torch.tensor(LOGP), torch.tensor(OLD), torch.tensor(REF), torch.tensor([1.0, -0.5]), MASK,
                        loss_type, 0.2, 0.28, 0.04, max_len=4, use_bias_correction_kl=True)
    assert loss.item() == pytest.approx(want, abs=1e-6)


def test_dapo_under_ddp_divides_by_the_tokens_of_every_rank():
    # two simulated ranks, one completion each (3 and 2 tokens): each divides its token sum by 5 / 2 ranks, as
    # TRL does, so the mean DDP takes of their gradients is the gradient of the one-process loss
    logp = torch.tensor(LOGP, requires_grad=True)
    args = (torch.tensor(OLD), torch.tensor(REF), torch.tensor([1.0, -0.5]), MASK, "dapo", 0.2, 0.28, 0.04)
    one_process, _ = grpo_loss(logp, *args)
    (grad_one,) = torch.autograd.grad(one_process, logp)
    ranks = [grpo_loss(logp[r:r + 1], *(a[r:r + 1] for a in args[:4]), *args[4:], num_tokens=torch.tensor(2.5))[0]
             for r in (0, 1)]
    ddp = (ranks[0] + ranks[1]) / 2
    assert ddp.item() == pytest.approx(-0.477337, abs=1e-6) == one_process.item()
    assert torch.allclose(torch.autograd.grad(ddp, logp)[0], grad_one)
    # each rank dividing by its own tokens (nanomath before, not TRL) weighs the short completion's tokens more
    own = [grpo_loss(logp[r:r + 1], *(a[r:r + 1] for a in args[:4]), *args[4:])[0] for r in (0, 1)]
    assert ((own[0] + own[1]) / 2).item() != pytest.approx(one_process.item(), abs=1e-3)


@pytest.mark.parametrize("loss_type, want_loss", [("grpo", 0.0), ("dapo", -0.1), ("dr_grpo", -0.0625)])
def test_on_policy_loss_and_its_gradient(loss_type, want_loss):
    logp = torch.tensor(LOGP, requires_grad=True)
    adv = torch.tensor([0.5, -0.5])
    loss, metrics = grpo_loss(logp, logp.detach(), None, adv, MASK, loss_type, 0.2, 0.28, 0.0, max_len=4)
    loss.backward()
    assert loss.item() == pytest.approx(want_loss, abs=1e-7)
    assert metrics["clip_any"] == 0 and "kl" not in metrics                # no reference, no KL
    lengths = MASK.sum(dim=1, keepdim=True).float()                      # |o_i| = 3, 2
    per_token = {"grpo": -adv[:, None] / (2 * lengths),                  # -A_i / (G |o_i|)
                 "dapo": -adv[:, None] / lengths.sum(),                  # -A_i / sum |o|
                 "dr_grpo": -adv[:, None] / (2 * 4)}[loss_type]          # -A_i / (G max_len)
    assert torch.allclose(logp.grad, per_token * MASK, atol=1e-7)


def test_k3_is_an_unbiased_estimate_of_kl():
    q, p = torch.tensor([.5, .3, .2]), torch.tensor([.4, .4, .2])
    expected_k3 = (q * k3_kl(q.log(), p.log())).sum()                   # E over tokens sampled from q
    assert expected_k3.item() == pytest.approx(0.0252671, abs=1e-7)
    assert expected_k3.item() == pytest.approx((q * (q / p).log()).sum().item(), abs=1e-7)
    assert (k3_kl(q.log(), p.log()) >= 0).all()


def tiny_model(block_size=320, n_embd=32, seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(block_size=block_size, vocab_size=260, n_layer=2, n_head=2, n_embd=n_embd))


def test_logprobs_at_the_sampling_temperature_give_ratio_one_and_no_kl():
    model, tok, T = tiny_model(), get_tokenizer("math"), 0.7
    prompts = [tok.encode(p) for p in ("12+34=?", "x*7=42, x=?", "9-5=?")]
    gen = generate(model, prompts, 12, temperature=T, stop_ids=(tok.end_id,),
                   generator=torch.Generator().manual_seed(0))
    completions = gen.token_lists()
    rows = {"prompts": prompts, "completions": completions,
            "sample_logps": [lp[:len(c)] for lp, c in zip(gen.logprobs, completions)]}
    idx, where, token_index, mask, sample_logps = rollout_batch(rows, get_tokenizer("math"), "cpu")
    assert mask.sum() == sum(len(c) for c in completions)
    with torch.no_grad():
        logits, _ = model(idx, **where)
    logps = token_logprobs(logits, idx, T).flatten()[token_index]
    # the engine's sampling-time log-probs land where the packed rows score the same tokens
    assert torch.allclose(logps * mask, sample_logps, atol=1e-5)
    old_logps = token_logprobs(logits, idx, T).flatten()[token_index]
    loss, metrics = grpo_loss(logps, old_logps, logps, torch.tensor([1.0, -1.0, 0.5]), mask, "dapo", 0.2, 0.28, 0.04)
    assert metrics["kl"] == 0 and metrics["clip_any"] == 0
    assert (torch.exp(logps - old_logps)[mask] == 1).all()
    # scored at T=1 instead, the same policy looks off-policy before any update
    assert not torch.allclose((token_logprobs(logits, idx, 1.0).flatten()[token_index] - logps)[mask],
                              torch.zeros(int(mask.sum())), atol=1e-2)


# ---------------------------------------------------------------- problems and weights

def test_drawn_problems_avoid_held_out_prompts():
    digits = {"a_plus_b_q": ((1, 1), (1, 1))}                            # only 100 problems exist
    rng = random.Random(0)
    every = {make_problem("a_plus_b_q", rng, digits["a_plus_b_q"]).prompt for _ in range(5000)}
    assert len(every) == 100
    allowed = set(sorted(every)[:10])
    problems = draw_problems(200, {("a_plus_b_q", (1, 1)): 1.0}, frozenset(every - allowed), random.Random(1))
    assert {p.prompt for p in problems} <= allowed
    mix = draw_problems(400, {("a_minus_b_q", (3, 3)): 3.0, ("a_plus_b_q", (1, 2)): 1.0}, frozenset(), random.Random(2))
    assert {(p.type, p.cell) for p in mix} == {("a_minus_b_q", (3, 3)), ("a_plus_b_q", (1, 2))}
    assert 0.68 < sum(p.type == "a_minus_b_q" for p in mix) / len(mix) < 0.82


def test_reward_format_bonus_only_with_a_right_answer_and_truncation_penalty():
    problem = make_problem("a_plus_b_q", random.Random(0), ((2, 2), (2, 2)))
    canonical = completion(problem)
    assert reward(problem, canonical, True, "mask", 0.1) == pytest.approx(1.1)
    assert reward(problem, f"The answer is {problem.answer}.<|end|>", True, "mask", 0.1) == 1.0   # right, not canonical
    wrong = completion(Problem(problem.type, problem.prompt, problem.answer + 1))
    assert reward(problem, wrong, True, "mask", 0.1) == 0
    assert reward(problem, canonical[:-len("<|end|>")], False, "mask", 0.1) == 1.0   # no <|end|>: right, not canonical
    assert reward(problem, canonical[:-len("<|end|>")], False, "penalize", 0.1) == 0


def test_auto_weights_put_practice_in_the_cells_that_hold_the_errors():
    def problems(task_type, cell, n):
        rng = random.Random(0)
        return [make_problem(task_type, rng, tuple((d, d) for d in cell)) for _ in range(n)]
    # a-b: 10 of 20 1-digit problems wrong, 0 of 80 2-digit ones; a+b: all 100 right
    val = (problems("a_minus_b_q", (1, 1), 20) + problems("a_minus_b_q", (2, 2), 80)
           + problems("a_plus_b_q", (1, 1), 100))
    correct = [i % 2 == 1 for i in range(20)] + [True] * 180
    weights = auto_weights(val, correct, 0.01)
    assert weights == pytest.approx({("a_minus_b_q", (1, 1)): 0.2 * 0.5,     # share of a-b x error rate
                                     ("a_minus_b_q", (2, 2)): 0.8 * 0.01,    # no errors: the floor
                                     ("a_plus_b_q", (1, 1)): 1.0 * 0.01})
    # a type's total is its error rate (10 of 100 a-b problems wrong), unless the floor lifts it


def test_cells_whose_every_problem_is_held_out_leave_the_mix():
    sums = [Problem("a_plus_b_q", f"{a}+{b}=?", a + b) for a in range(10) for b in range(10)]   # all 100 of 1x1
    weights = {("a_plus_b_q", (1, 1)): 1.0, ("a_plus_b_q", (2, 1)): 2.0}
    assert without_exhausted_cells(weights, sums) == {("a_plus_b_q", (2, 1)): 2.0}
    assert without_exhausted_cells(weights, sums[:99]) == weights
    with pytest.raises(SystemExit, match="every problem of the task mix is held out"):
        without_exhausted_cells({("a_plus_b_q", (1, 1)): 1.0}, sums)


def test_configured_task_weights_spread_evenly_over_the_cells():
    weights = check_weights({"a_times_b_q": 3, "a_plus_b_q": 0}, {"a_times_b_q": ((1, 3), (1, 1)),
                                                                "a_plus_b_q": ((1, 1), (1, 1))}, "data/x")
    assert weights == {("a_times_b_q", (1, 1)): 1.0, ("a_times_b_q", (2, 1)): 1.0, ("a_times_b_q", (3, 1)): 1.0}


# ---------------------------------------------------------------- end to end on a tiny random checkpoint

def write_checkpoint(path, model, tokenizer="math", config=None):
    opt = model.configure_optimizers(0.0, 1e-3, (0.9, 0.99), "cpu")
    save_checkpoint(str(path), **checkpoint_payload(model, opt, config or {}, 0, {"tokenizer": tokenizer}))
    return path



@pytest.fixture(scope="module")
def random_ckpt(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "ckpt.pt", tiny_model())


def run_grpo(monkeypatch, *args, patch=None):
    """main() of a freshly imported train_grpo (configure() overwrites its globals) with argv args."""
    module = importlib.reload(importlib.import_module("train_grpo"))
    if patch:
        patch(module)
    # a random model never stops: short completions and a small eval keep each run to a second or two
    # no WiSE-FT average unless a test asks for one
    monkeypatch.setattr(sys, "argv", ["train_grpo.py", "config/grpo_tiny.py", "--device=cpu", "--max_new_tokens=24",
                                      "--n_eval_problems=14", "--average_weight=1", *args])
    module.main()
    return module


def read_log(out_dir, split):
    rows = [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == split]


def test_end_to_end_then_resume(monkeypatch, data_dir, random_ckpt, tmp_path):
    out = tmp_path / "grpo"
    references = []

    def record_reference(module):
        update = module.policy_update
        module.policy_update = lambda model, reference, *a: references.append(reference) or update(model, reference, *a)

    common = (f"--data_dir={data_dir}", f"--out_dir={out}")
    # fp32: in bf16 the engine's and the training pass's log-probs differ by ~1e-3, too much to compare
    run_grpo(monkeypatch, f"--init_from={random_ckpt}", "--dtype=float32", "--num_iterations=1", *common,
             patch=record_reference)
    assert references == [None, None]                                    # beta=0: no reference model at all
    train = read_log(out, "train")
    assert [r["iter"] for r in train] == [1, 2]
    for key in ("reward_mean", "reward_std", "zero_std_frac", "dropped_frac", "entropy", "clip_low",
                "clip_high", "length_mean", "length_max", "truncated_frac", "sample_tokens_per_s", "sample_share"):
        assert key in train[0], key
    assert train[0]["groups"] == 4 and train[0]["dropped_frac"] == 0
    assert train[0]["clip_low"] == train[0]["clip_high"] == 0            # one update: exactly on-policy
    assert train[0]["sample_logp_diff"] < 1e-4                           # the engine's log-probs agree
    assert set(read_log(out, "eval")[-1]["accuracy"]) >= {"overall", "a_plus_b_q"}
    ckpt = torch.load(out / "ckpt.pt", weights_only=True)
    assert ckpt["iter_num"] == 2 and ckpt["reference_from"] == str(random_ckpt)
    assert 0 <= ckpt["informative_share"] <= 1                           # sizes the resumed run's first round
    assert {t for t, _ in ckpt["task_weights"]} == set(TASK_TYPES)         # auto: every type keeps a little practice

    references.clear()
    run_grpo(monkeypatch, "--init_from=resume", "--max_iters=3", "--beta=0.04", *common, patch=record_reference)
    assert len(references) == 1 and references[0] is not None          # reloaded from reference_from
    train = read_log(out, "train")
    assert [r["iter"] for r in train] == [1, 2, 3] and "kl" not in train[0] and train[2]["kl"] >= 0


def test_average_state_is_the_weighted_mean_of_two_state_dicts():
    trained = {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([4.0], dtype=torch.bfloat16)}
    other = {"w": torch.tensor([5.0, -2.0]), "b": torch.tensor([0.0], dtype=torch.bfloat16)}
    averaged = average_state(trained, other, 0.75)
    assert averaged["w"].tolist() == [2.0, 1.0]                          # 0.75 x 1 + 0.25 x 5, 0.75 x 2 - 0.25 x 2
    assert averaged["b"].dtype == torch.bfloat16 and averaged["b"].item() == 3.0
    assert average_state(trained, other, 1.0)["w"].tolist() == [1.0, 2.0]


def test_the_last_checkpoint_holds_the_average_and_a_resume_goes_on_from_the_trained_weights(
        monkeypatch, data_dir, random_ckpt, tmp_path):
    # another random model of the same shape stands for SFT, which the start was trained from
    sft = write_checkpoint(tmp_path / "sft.pt", tiny_model(seed=1))
    start = write_checkpoint(tmp_path / "dpo.pt", tiny_model(), config={"init_from": str(sft)})
    out = tmp_path / "grpo"
    common = (f"--init_from={start}", f"--data_dir={data_dir}", f"--out_dir={out}", "--max_iters=1",
              "--average_weight=0.75", f"--average_with={sft}", "--dtype=float32")
    run_grpo(monkeypatch, *common)
    ckpt = torch.load(out / "ckpt.pt", weights_only=True)
    other = torch.load(sft, weights_only=True)["model"]
    assert ckpt["average_with"] == str(sft) and ckpt["iter_num"] == 1
    for name, trained in ckpt["trained_model"].items():
        assert torch.allclose(ckpt["model"][name], 0.75 * trained + 0.25 * other[name], atol=1e-6), name
    assert not torch.equal(ckpt["model"]["lm_head.weight"], ckpt["trained_model"]["lm_head.weight"])
    average_row, = read_log(out, "average")
    assert average_row["accuracy"] == ckpt["accuracy"]
    assert [r["iter"] for r in read_log(out, "eval")] == [0, 1]        # the trained weights' accuracy, logged too

    # a resume starts from the trained weights (from the average, it would save the average as trained_model)
    run_grpo(monkeypatch, *common, "--init_from=resume")
    resumed = torch.load(out / "ckpt.pt", weights_only=True)
    assert len(read_log(out, "average")) == 1                            # written again, not twice
    for name, trained in ckpt["trained_model"].items():
        assert torch.equal(resumed["trained_model"][name], trained) and torch.equal(resumed["model"][name],
                                                                                     ckpt["model"][name]), name


@pytest.mark.parametrize("args, message", [
    (["--average_weight=1.5"], r"average_weight=1\.5: the trained weights' share of the average is 0 to 1"),
    (["--average_weight=0.5", "--lora_rank=4"], r"averages whole models, and this run trains LoRA adapters"),
    (["--average_weight=0.5", "--average_with=nowhere.pt"], r"average_with=nowhere\.pt: no such checkpoint"),
    (["--average_weight=0.5", "--average_with=OTHER_SHAPE"], r"is another model than the one GRPO trains"),
    (["--average_weight=0.5", "--average_with=STRANGER"], r"STRANGER is not a checkpoint that .* was trained from"),
])
def test_a_bad_average_is_a_one_line_error(monkeypatch, data_dir, random_ckpt, tmp_path, args, message):
    other_shape = write_checkpoint(tmp_path / "other.pt", GPT(GPTConfig(block_size=64, vocab_size=260, n_layer=1,
                                                                        n_head=2, n_embd=16)))
    stranger = write_checkpoint(tmp_path / "stranger.pt", tiny_model(seed=2))   # the shape, not the lineage
    args = [a.replace("OTHER_SHAPE", str(other_shape)).replace("STRANGER", str(stranger)) for a in args]
    message = message.replace("STRANGER", re.escape(str(stranger)))
    with pytest.raises(SystemExit, match=message) as e:
        run_grpo(monkeypatch, f"--init_from={random_ckpt}", f"--data_dir={data_dir}", f"--out_dir={tmp_path / 'o'}",
                 *args)
    assert "\n" not in str(e.value)


def test_sft_anchor_adds_the_nll_of_worked_solutions(monkeypatch, data_dir, random_ckpt, tmp_path):
    anchors, out = [], tmp_path / "grpo"

    def record_anchor(module):
        update = module.policy_update
        module.policy_update = lambda *a: anchors.append(a[-2]) or update(*a)

    run_grpo(monkeypatch, f"--init_from={random_ckpt}", f"--data_dir={data_dir}", f"--out_dir={out}",
             "--dtype=float32", "--max_iters=1", "--sft_coef=0.5", "--sft_batch_size=8", "--num_iterations=1",
             patch=record_anchor)
    (x, y, where), = anchors
    # 8 worked solutions, packed into rows (batches.sft_batch); scored: completion tokens only
    assert 1 <= x.shape[0] <= 8 and (y[:, 0] == -1).all() and (y >= 0).any()
    start = model_from_checkpoint(load_checkpoint(str(random_ckpt)), "cpu")
    # measured before the update's optimizer step: the start checkpoint's completion-token NLL
    want = start(x, y, **where)[1].item()
    assert read_log(out, "train")[0]["sft_loss"] == pytest.approx(want, rel=1e-5)


def test_dynamic_sampling_keeps_only_groups_whose_rewards_differ(monkeypatch, data_dir, random_ckpt, tmp_path):
    out, calls = tmp_path / "grpo", itertools.count()

    def one_right_answer_in_every_other_group(module):
        # rewards in call order: of each pair of groups of 4, the first has one reward 1, the second none
        module.reward = lambda *args: float(next(calls) % 8 == 0)

    run_grpo(monkeypatch, f"--init_from={random_ckpt}", f"--data_dir={data_dir}", f"--out_dir={out}",
             "--max_iters=1", "--beta=0.04", "--dynamic_sampling=True", "--num_iterations=1",
             patch=one_right_answer_in_every_other_group)
    row = read_log(out, "train")[0]
    assert row["groups"] == 4                                            # filled in the second round
    assert row["zero_std_frac"] == 0.5 and row["dropped_frac"] == 0.5
    assert row["kl"] == 0                                                # policy == reference before the update


@pytest.mark.parametrize("pos", ["rope", "coupled"])
def test_packed_rollouts_score_every_token_as_if_alone(pos):
    # rollouts of very different lengths packed into shared rows: each completion token gets the log-prob it
    # gets in a batch of its own, and the unscored rollout (truncated, masked out) takes no room
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=64, vocab_size=260, n_layer=2, n_head=2, n_embd=32, pos=pos))
    tok = get_tokenizer("math")
    texts = [("1+2=?", "3"), ("345+678=?", completion(make_problem("a_plus_b_q", random.Random(0), ((3, 3), (3, 3))))),
             ("9-5=?", "4"), ("x*7=42, x=?", "6"), ("77*8=?", "616")]
    rows = {"prompts": [tok.encode(p) for p, _ in texts], "completions": [tok.encode(c) for _, c in texts]}
    rows["sample_logps"] = [torch.randn(len(c)).tolist() for c in rows["completions"]]
    scored = [True, True, True, False, True]
    idx, where, token_index, mask, sample_logps = rollout_batch(rows, tok, "cpu", scored)
    longest = max(len(p) + len(c) for p, c in zip(rows["prompts"], rows["completions"]))
    assert idx.shape == (2, longest)                                   # 5 rollouts, one unscored, in 2 rows
    assert mask.sum(dim=1).tolist() == [len(c) if s else 0 for c, s in zip(rows["completions"], scored)]
    packed = token_logprobs(model(idx, **where)[0], idx).flatten()[token_index]   # (B, M)
    for b, (p, c) in enumerate(zip(rows["prompts"], rows["completions"])):
        assert torch.equal(sample_logps[b, :len(c)], torch.tensor(rows["sample_logps"][b]))
        if not scored[b]:
            continue
        alone = torch.tensor([p + c])
        logps = token_logprobs(model(alone, places=torch.tensor([completion_places(tok, p, c)]))[0], alone)
        assert torch.allclose(packed[b, :len(c)], logps[0, len(p) - 1:], atol=1e-5)


def test_a_sampling_round_is_sized_to_fill_the_batch(monkeypatch):
    module = importlib.reload(importlib.import_module("train_grpo"))
    monkeypatch.setattr(module, "prompts_per_step", 16)
    monkeypatch.setattr(module, "max_sampling_rounds", 4)                # a budget of 64 prompts a step
    assert module.round_prompts(16, 1.0, 0) == 16
    assert module.round_prompts(16, 0.5, 0) == 32                        # half informative: twice the prompts
    assert module.round_prompts(5, 0.4, 32) == 13                        # ceil(5 / 0.4)
    assert module.round_prompts(16, 0.1, 0) == 64                        # the share counts as at least 1/4
    assert module.round_prompts(10, 0.1, 60) == 4                        # what is left of the 64


def test_box_lengths_add_the_box_s_longest_lengths_to_the_edge(monkeypatch, data_dir, random_ckpt, tmp_path):
    measured = []

    def solved_in_the_box(module):   # length 2 (the box's longest) always right, length 3 right half the time
        def measure(model, tok, rt, problems, *args):
            measured.extend(problems)
            return {(p.type, problem_length(p)): [1.0 if problem_length(p) == 2 else 0.5] for p in problems}
        module.measure_edge = measure

    out = tmp_path / "grpo"
    run_grpo(monkeypatch, f"--init_from={random_ckpt}", f"--data_dir={data_dir}", f"--out_dir={out}",
             "--practice=edge", "--box_lengths=1", "--edge_lengths=1", "--max_iters=1", patch=solved_in_the_box)
    # the tiny data's box: operands of up to 2 digits; its longest length (2) and one past it (3), every type
    assert {(p.type, problem_length(p)) for p in measured} == {(t, n) for t in TASK_TYPES for n in (2, 3)}
    box = read_meta(data_dir)["config"]["tasks"]
    weights = torch.load(out / "ckpt.pt", weights_only=True)["task_weights"]
    # weighed by the share of informative groups: the solved box length gets none, the edge all of it
    assert set(weights) == {(t, cell) for t in TASK_TYPES for cell in length_cells(t, box[t], 3)}

    for args, message in ((("--box_lengths=3",), r"box_lengths=3: the data's box has lengths 1 to 2"),
                          (("--box_lengths=0", "--edge_lengths=0"), r"edge_lengths=0 and box_lengths=0: the edge "
                                                                    r"would measure no length")):
        with pytest.raises(SystemExit, match=message):
            run_grpo(monkeypatch, f"--init_from={random_ckpt}", f"--data_dir={data_dir}",
                     f"--out_dir={tmp_path / 'refused'}", "--practice=edge", *args, patch=solved_in_the_box)


def test_a_batch_that_never_fills_is_a_one_line_error(monkeypatch, data_dir, tmp_path):
    model = tiny_model()
    with torch.no_grad():   # every hidden state becomes all-ones, and only <|end|>'s embedding points that way
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.fill_(1.0)
        model.transformer.wte.weight[get_tokenizer("math").end_id] = 1.0
    ckpt = write_checkpoint(tmp_path / "always_stops.pt", model)
    with pytest.raises(SystemExit, match=r"no group with differing rewards \(mean reward 0\.000\): the tasks are "
                                         r"too hard for this checkpoint"):
        run_grpo(monkeypatch, f"--init_from={ckpt}", f"--data_dir={data_dir}", f"--out_dir={tmp_path / 'o'}",
                 "--task_weights={'a_plus_b_q': 1}", "--dynamic_sampling=True")


def test_a_rollout_may_run_slack_tokens_past_its_reference_and_no_further_than_max_new_tokens():
    tok = get_tokenizer("math")
    problem = make_problem("a_times_b_q", random.Random(0), ((3, 3), (3, 3)))
    n = len(tok.encode(completion(problem)))
    assert rollout_limit(tok, problem, 16, 400) == n + 16
    assert rollout_limit(tok, problem, 16, n) == n
    assert rollout_limit(tok, problem, 400, 400) == 400            # a slack past max_new_tokens: no cut
    assert rollout_limit(tok, Problem("story", "Ann has 3 apples. How many?", 3), 16, 400) == 400


def test_a_negative_rollout_slack_is_a_one_line_error(monkeypatch):
    with pytest.raises(SystemExit, match="rollout_slack must be >= 0, got -1"):
        run_grpo(monkeypatch, "--rollout_slack=-1")


def test_negative_sft_coef_is_a_one_line_error(monkeypatch):
    with pytest.raises(SystemExit, match="sft_coef must be >= 0, got -1"):
        run_grpo(monkeypatch, "--sft_coef=-1.0")


def test_group_of_one_is_a_one_line_error(monkeypatch):
    with pytest.raises(SystemExit, match="group_size=1: advantages compare .* use group_size >= 2"):
        run_grpo(monkeypatch, "--group_size=1")


def test_tokenizer_mismatch_is_a_one_line_error(monkeypatch, data_dir, tmp_path):
    ckpt = write_checkpoint(tmp_path / "gpt2.pt", tiny_model(), tokenizer="gpt2")
    with pytest.raises(SystemExit, match="tokenizer mismatch: checkpoint .* uses 'gpt2'"):
        run_grpo(monkeypatch, f"--init_from={ckpt}", f"--data_dir={data_dir}", f"--out_dir={tmp_path / 'o'}")


def test_unknown_task_weights_are_a_one_line_error(monkeypatch, data_dir, random_ckpt, tmp_path):
    with pytest.raises(SystemExit, match="task_weights .* need weights >= 0"):
        run_grpo(monkeypatch, f"--init_from={random_ckpt}", f"--data_dir={data_dir}", f"--out_dir={tmp_path}",
                 "--task_weights={'a_pluss_b': 1}")
    with pytest.raises(SystemExit, match="task_weights .* need weights >= 0"):
        check_weights({"a_plus_b_q": "1"}, {"a_plus_b_q": ((1, 1), (1, 1))}, "data/x")
    with pytest.raises(SystemExit, match="auto_weight_floor must be > 0"):
        run_grpo(monkeypatch, "--auto_weight_floor=0.0")
