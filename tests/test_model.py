
import pytest
import torch

import model as model_module
from generation import generate, sample_next
from model import GPT, GPTConfig, token_logprobs, explicit_causal_attention

OPTIONS = {
    "gpt2": dict(),
    "rope": dict(pos="rope"),
    "rmsnorm": dict(norm="rmsnorm"),
    "swiglu": dict(mlp="swiglu"),
    "gqa": dict(n_kv_head=2),
    "mqa": dict(n_kv_head=1),
    "qk_norm": dict(qk_norm=True),
    "untied": dict(tie_embeddings=False),
    "no_bias": dict(bias=False),
    "modern": dict(pos="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2, qk_norm=True, tie_embeddings=False,
                   bias=False),
}


def tiny(**kw):
    torch.manual_seed(0)
    cfg = dict(block_size=64, vocab_size=50, n_layer=2, n_head=4, n_embd=32)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg)).eval()


PROMPTS = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10], [11]]


@pytest.mark.parametrize("name", OPTIONS)
def test_kv_cache_greedy_equals_no_cache(name):
    model = tiny(**OPTIONS[name])
    cached = generate(model, PROMPTS, 30)
    recomputed = generate(model, PROMPTS, 30, use_cache=False)
    assert torch.equal(cached.tokens, recomputed.tokens)
    assert torch.allclose(cached.logprobs, recomputed.logprobs, atol=1e-5)


@pytest.mark.parametrize("name", OPTIONS)
def test_left_padding_does_not_change_a_row(name):
    # a row's greedy output and log-probs must not depend on the padding its neighbours force on it
    model = tiny(**OPTIONS[name])
    batched = generate(model, PROMPTS, 20)
    for i, prompt in enumerate(PROMPTS):
        alone = generate(model, [prompt], 20)
        assert torch.equal(alone.tokens[0], batched.tokens[i])
        assert torch.allclose(alone.logprobs[0], batched.logprobs[i], atol=1e-5)


@pytest.mark.parametrize("name", OPTIONS)
def test_generation_logprobs_match_a_forward_pass(name):
    model = tiny(**OPTIONS[name])
    prompt = [5, 6, 7]
    gen = generate(model, [prompt], 10, temperature=0.7, generator=torch.Generator().manual_seed(0))
    idx = torch.tensor([prompt + gen.tokens[0].tolist()])
    logits, _ = model(idx)
    logps = token_logprobs(logits, idx, temperature=0.7)[0, len(prompt) - 1:]
    assert torch.allclose(logps, gen.logprobs[0], atol=1e-5)


@pytest.mark.parametrize("n_kv_head", [4, 2])
def test_explicit_attention_equals_the_fused_kernel(n_kv_head):
    # the CPU bf16 training path must compute what scaled_dot_product_attention computes, GQA included
    torch.manual_seed(0)
    q = torch.randn(3, 4, 9, 8)
    k, v = torch.randn(3, n_kv_head, 9, 8), torch.randn(3, n_kv_head, 9, 8)
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=n_kv_head != 4)
    torch.testing.assert_close(explicit_causal_attention(q, k, v), want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("T", [1, 3])
def test_explicit_attention_of_cached_queries_equals_the_fused_kernel(T):
    # a decoding step's queries are the last T of S columns: causal means column <= S - T + i, and a mask
    # (left padding) is applied as the fused kernel applies it
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 4, T, 8), torch.randn(3, 2, 7, 8), torch.randn(3, 2, 7, 8)
    causal = torch.ones(T, 7, dtype=torch.bool).tril(7 - T)
    fused = torch.nn.functional.scaled_dot_product_attention
    torch.testing.assert_close(explicit_causal_attention(q, k, v),
                               fused(q, k, v, attn_mask=causal, enable_gqa=True), atol=1e-5, rtol=1e-5)
    mask = causal.expand(3, 1, T, 7).clone()
    mask[0, :, :, :2] = False                                   # row 0 has two pad columns
    torch.testing.assert_close(explicit_causal_attention(q, k, v, mask=mask),
                               fused(q, k, v, attn_mask=mask, enable_gqa=True), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("amx", [False, True])
def test_bf16_decoding_scores_its_tokens_as_an_fp32_forward_pass_on_either_attention_path(amx, monkeypatch):
    # a cached bf16 decoding step takes the fused kernel on a CPU with AMX and the explicit ops elsewhere
    # (model.CPU_AMX); both must score the padded rows' tokens as the fp32 model does, to bf16's precision
    monkeypatch.setattr(model_module, "CPU_AMX", amx)
    model = tiny(pos="rope")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gen = generate(model, PROMPTS, 10, temperature=1.0, generator=torch.Generator().manual_seed(0))
    for i, prompt in enumerate(PROMPTS):
        idx = torch.tensor([prompt + gen.token_lists()[i]])
        logps = token_logprobs(model(idx)[0], idx)[0, len(prompt) - 1:]
        assert torch.allclose(logps, gen.logprobs[i], atol=0.05), (amx, i)


def test_bf16_training_loss_is_close_to_fp32():
    # on a CPU, bf16 autocast routes training through explicit_causal_attention
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=32, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, pos="rope"))
    idx = torch.randint(0, 32, (4, 16))
    _, loss32 = model(idx, idx)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, loss16 = model(idx, idx)
    assert abs(loss16.item() - loss32.item()) < 0.02


def test_stop_tokens_end_rows_and_pad_them():
    model = tiny()
    free = generate(model, PROMPTS, 20, temperature=1.0, generator=torch.Generator().manual_seed(0))
    row = free.tokens[0].tolist()
    k = next(k for k in range(1, 20) if row[k] not in row[:k])  # stop row 0 at the first new token
    gen = generate(model, PROMPTS, 20, temperature=1.0, generator=torch.Generator().manual_seed(0),
                   stop_ids=(row[k],), pad_id=0)
    assert gen.stopped[0] and gen.mask[0, :k + 1].all() and not gen.mask[0, k + 1:].any()
    assert (gen.tokens[0, k + 1:] == 0).all()
    assert gen.token_lists()[0] == row[:k + 1]


def test_a_row_limit_cuts_that_row_where_max_new_tokens_would():
    # limits= gives each row its own max_new_tokens: each greedy row is the unlimited row cut at its limit,
    # not stopped, and the other rows are unchanged when a cut row leaves the batch
    model = tiny()
    free = generate(model, PROMPTS, 20)
    cut = generate(model, PROMPTS, 20, limits=[5, 20, 1])
    for i, n in enumerate([5, 20, 1]):
        assert cut.token_lists()[i] == free.tokens[i, :n].tolist()
        assert not cut.stopped[i]
    with pytest.raises(SystemExit, match="limits="):
        generate(model, PROMPTS, 20, limits=[5, 21, 1])


def test_sampling_is_deterministic_with_a_seed():
    model = tiny()
    a = generate(model, PROMPTS, 15, temperature=1.0, generator=torch.Generator().manual_seed(3))
    b = generate(model, PROMPTS, 15, temperature=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.tokens, b.tokens)


def test_top_k_and_top_p_filter_the_distribution():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    g = torch.Generator().manual_seed(0)
    top1 = {int(sample_next(logits, 1.0, 1, 1.0, g)) for _ in range(50)}
    assert top1 == {0}
    top2 = {int(sample_next(logits, 1.0, 2, 1.0, g)) for _ in range(200)}
    assert top2 == {0, 1}
    # top_p 0.7: 0.5 alone does not cover it, 0.5+0.3 does: tokens 0 and 1 stay
    nucleus = {int(sample_next(logits, 1.0, 0, 0.7, g)) for _ in range(200)}
    assert nucleus == {0, 1}


def test_sampling_draws_each_token_with_its_probability():
    # inverse-CDF sampling: frequencies within 4 standard errors of the probabilities, zeros never drawn
    probs = torch.tensor([0.0, 0.5, 0.0, 0.3, 0.15, 0.05, 0.0])
    logits = torch.log(probs).expand(20000, 7)
    ids = sample_next(logits, 1.0, 0, 1.0, torch.Generator().manual_seed(0))
    freq = torch.bincount(ids, minlength=7).float() / len(ids)
    assert (freq[probs == 0] == 0).all()
    assert ((freq - probs).abs() <= 4 * (probs * (1 - probs) / len(ids)).sqrt()).all()


def test_token_logprobs_scores_the_next_token():
    logits = torch.randn(2, 5, 7)
    idx = torch.randint(0, 7, (2, 5))
    logps = token_logprobs(logits, idx)
    expected = logits.log_softmax(-1)[:, :-1].gather(2, idx[:, 1:, None]).squeeze(2)
    assert logps.shape == (2, 4)
    assert torch.allclose(logps, expected, atol=1e-6)


def test_too_long_inputs_are_one_line_errors():
    model = tiny()
    with pytest.raises(SystemExit, match="longer than block_size"):
        model(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(SystemExit, match="exceeds block_size"):
        generate(model, [[1] * 60], 10)
    with pytest.raises(SystemExit, match="pos="):
        GPTConfig(pos="alibi")


def test_optimizer_decays_only_2d_weights():
    model = tiny(tie_embeddings=False)
    opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99), "cpu")
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and all(p.dim() == 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.dim() == 1 for p in no_decay["params"])
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == sum(p.numel() for p in model.parameters())


def test_gqa_has_fewer_parameters_and_mfu_is_positive():
    full, gqa = tiny(), tiny(n_kv_head=1)
    assert gqa.num_params() < full.num_params()
    assert 0 < full.estimate_mfu(tokens_per_iter=1024, seq_len=64, dt=0.1, peak_flops=1e12) < 1


def test_from_pretrained_matches_hugging_face_gpt2():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf_config = transformers.GPT2Config(n_positions=32, n_embd=32, n_layer=2, n_head=4, vocab_size=60)
    hf = transformers.GPT2LMHeadModel(hf_config).eval()
    ours = GPT.from_pretrained(hf_model=hf).eval()
    idx = torch.randint(0, 60, (2, 16))
    with torch.no_grad():
        theirs = hf(idx).logits
        mine, _ = ours(idx)
    assert torch.allclose(mine, theirs, atol=1e-4)


def test_from_pretrained_grows_the_embedding_for_added_tokens():
    """tokenizer 'gpt2' has 3 ids more than GPT-2: the embedding grows to a multiple of 64, GPT-2's own ids keep
    their logits, and each new id starts at the mean embedding."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_positions=32, n_embd=32, n_layer=2, n_head=4,
                                                              vocab_size=60)).eval()
    ours = GPT.from_pretrained(hf_model=hf, vocab_size=63).eval()
    assert ours.config.vocab_size == 64
    wte = ours.transformer.wte.weight
    assert torch.allclose(wte[60:], hf.transformer.wte.weight.mean(dim=0).expand(4, -1))
    idx = torch.randint(0, 60, (2, 16))
    with torch.no_grad():
        assert torch.allclose(ours(idx)[0][..., :60], hf(idx).logits, atol=1e-4)


@pytest.mark.parametrize("name", ["gpt2", "rope"])
def test_dropping_finished_rows_changes_no_token(name):
    # the engine drops rows that stopped from the batch and the KV cache (compact=True, the default); every
    # row must get exactly the tokens and log-probs it gets when the whole batch runs to the end
    model = tiny(**OPTIONS[name])
    prompts = [[i, i + 1, i + 2][:1 + i % 3] for i in range(1, 13)]
    free = generate(model, prompts, 24, compact=False)
    stop_ids = tuple({int(free.tokens[i, 2 + i % 5]) for i in range(0, 12, 2)})   # some rows stop early
    whole = generate(model, prompts, 24, stop_ids=stop_ids, compact=False)
    compacted = generate(model, prompts, 24, stop_ids=stop_ids)
    assert 4 * int((whole.mask.sum(dim=1) < 12).sum()) >= len(prompts)   # a quarter stop halfway: rows are dropped
    assert torch.equal(whole.stopped, compacted.stopped) and torch.equal(whole.mask, compacted.mask)
    assert torch.equal(whole.tokens, compacted.tokens)
    assert torch.allclose(whole.logprobs, compacted.logprobs, atol=1e-5)
