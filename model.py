"""
The GPT every nanomath stage shares, and token_logprobs, the score of given tokens under it (SFT metrics,
DPO and GRPO). The KV-cache engine that samples from it lives in generation.py.

The default architecture is GPT-2's (learned positions, LayerNorm, GELU MLP,
tied embeddings), so GPT-2 weights load into it. Options a modern small model
uses: RoPE, RMSNorm, SwiGLU, grouped-query attention (n_kv_head < n_head),
QK-norm and untied embeddings; config/pretrain_modern.py turns them all on.
"""
import inspect
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint


@dataclass
class GPTConfig:
    block_size: int = 1024
    vocab_size: int = 50304
    n_layer: int = 12
    n_head: int = 12
    n_kv_head: int = 0          # 0 means n_head (plain multi-head attention); fewer shares K/V between heads (GQA)
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True           # biases in Linear layers and LayerNorm, as in GPT-2
    pos: str = "learned"        # "learned" (GPT-2), "rope", or "coupled": RoPE by digit place and by position in a step
    norm: str = "layernorm"     # "layernorm" or "rmsnorm"
    mlp: str = "gelu"           # "gelu" (GPT-2) or "swiglu"
    qk_norm: bool = False       # normalise queries and keys per head before attention
    tie_embeddings: bool = True
    rope_theta: float = 10000.0

    def __post_init__(self):
        allowed = {"pos": ("learned", "rope", "coupled"), "norm": ("layernorm", "rmsnorm"), "mlp": ("gelu", "swiglu")}
        for key, options in allowed.items():
            if getattr(self, key) not in options:
                raise SystemExit(f"model config: {key}={getattr(self, key)!r}; allowed: {', '.join(options)}")
        self.n_kv_head = self.n_kv_head or self.n_head
        if self.n_embd % self.n_head or self.n_head % self.n_kv_head:
            raise SystemExit(f"model config: n_embd ({self.n_embd}) must divide by n_head ({self.n_head}) "
                             f"and n_head by n_kv_head ({self.n_kv_head})")
        if self.pos == "coupled" and (self.n_embd // self.n_head) % 4:
            raise SystemExit(f"model config: pos='coupled' splits each head's rotary pairs in two halves, so the "
                             f"head size {self.n_embd // self.n_head} must divide by 4")


def make_norm(config, dim):
    if config.norm == "rmsnorm":
        return nn.RMSNorm(dim, eps=1e-5)
    return nn.LayerNorm(dim, bias=config.bias)


def rope_angles(n_pairs, length, theta, max_freq=1.0):
    """cos and sin (length, n_pairs) of the rotary angles p * freq_k for positions p < length, frequencies
    from max_freq down to max_freq / theta."""
    inv_freq = max_freq / theta ** (torch.arange(n_pairs).float() / n_pairs)
    angles = torch.outer(torch.arange(length).float(), inv_freq)
    return angles.cos(), angles.sin()


# pos='coupled' rotates half of each head's pairs by the token's digit place (places.py). The place frequencies
# are k*pi/n for k = 1..n (n pairs): the sum of their cosines is n at a place difference of 0 and 0 or -1 at
# every difference from 1 to 2n-1 (a Dirichlet kernel), so that "the digit in my column" is one sharp peak for
# numbers up to 2n-1 digits long, not one that blurs into the neighbouring columns or repeats a few places on.
PLACE_FREQS = "linear"


def place_angles(n_pairs, length):
    if PLACE_FREQS == "linear":
        inv_freq = torch.arange(1, n_pairs + 1).float() * math.pi / n_pairs
    else:
        inv_freq = (math.pi / 16) / 100.0 ** (torch.arange(n_pairs).float() / n_pairs)
    angles = torch.outer(torch.arange(length).float(), inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x, cos, sin):
    # x: (B, H, T, hd); cos, sin: (B, 1, T, hd/2). Rotate pairs (x1_i, x2_i) of the two halves (GPT-NeoX layout).
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).type_as(x)


def explicit_causal_attention(q, k, v, dropout_p=0.0, mask=None):
    """softmax(q k^T / sqrt(hd), causal or mask) v written out as three ops. On a CPU this is what training
    in bf16 and every cached decoding step use: torch's fused CPU attention kernel runs its bf16 backward
    about 3x slower than these ops, whose matmuls run on the bf16 units, and a decoding step's one query
    over a masked cache 4-5x slower in bf16 and up to 2x in fp32 (measured with torch 2.13 on AVX512-BF16;
    bench.py times the whole step and the engine). q (B, nh, T, hd); k, v (B, nkv, S, hd); mask (B, 1, T, S)
    bool, or None for causal attention where the queries are the last T of the S keys (a KV cache's padded
    buffer is not: GPT.forward always passes a mask with a cache) -> (B, nh, T, hd)."""
    T, S = q.size(-2), k.size(-2)
    if k.size(1) != q.size(1):  # GQA: each K/V head serves n_head / n_kv_head query heads
        k = k.repeat_interleave(q.size(1) // k.size(1), dim=1)
        v = v.repeat_interleave(q.size(1) // v.size(1), dim=1)
    att = (q @ k.transpose(-2, -1)) * q.size(-1) ** -0.5               # (B, nh, T, S)
    if mask is None:
        mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
    att = F.dropout(att.masked_fill(~mask, float("-inf")).softmax(dim=-1), dropout_p)
    return att @ v


# A CPU decoding step in bf16 takes torch's fused attention kernel where the CPU has AMX tiles (Intel Sapphire
# Rapids on), which make it the faster one; without them (AVX512-BF16 only) the explicit ops are faster
# (README: Benchmarks, Decoding on a CPU, has the measurements).
CPU_AMX = torch.cpu.get_capabilities().get("amx_bf16", False)


class CausalSelfAttention(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head, self.n_kv_head = config.n_head, config.n_kv_head
        self.head_dim = config.n_embd // config.n_head
        # one projection for q, k and v (GPT-2's c_attn); with GQA k and v are narrower
        self.c_attn = nn.Linear(config.n_embd, (self.n_head + 2 * self.n_kv_head) * self.head_dim, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.qk_norm = config.qk_norm
        if self.qk_norm:
            self.q_norm = nn.RMSNorm(self.head_dim, eps=1e-5)
            self.k_norm = nn.RMSNorm(self.head_dim, eps=1e-5)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, rope=None, attn_mask=None, kv_cache=None):
        B, T, C = x.size()
        hd = self.head_dim
        q, k, v = self.c_attn(x).split([self.n_head * hd, self.n_kv_head * hd, self.n_kv_head * hd], dim=2)
        q = q.view(B, T, self.n_head, hd).transpose(1, 2)      # (B, nh, T, hd)
        k = k.view(B, T, self.n_kv_head, hd).transpose(1, 2)   # (B, nkv, T, hd)
        v = v.view(B, T, self.n_kv_head, hd).transpose(1, 2)   # (B, nkv, T, hd)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_idx, k, v)        # (B, nkv, W, hd): cached + T columns, then zeros
            # GPT.forward always passes a mask with a cache; the columns not written yet are never attended
            attn_mask = F.pad(attn_mask, (0, k.size(-2) - attn_mask.size(-1)), value=False)   # (B, 1, T, W)
        dropout_p = self.dropout if self.training else 0.0
        explicit = q.device.type == "cpu" and (q.dtype == torch.bfloat16 or kv_cache is not None)
        if explicit and not (kv_cache is not None and q.dtype == torch.bfloat16 and CPU_AMX):
            y = explicit_causal_attention(q, k, v, dropout_p, attn_mask)
        else:
            # training takes the fused causal path (flash attention on GPU); the engine passes its mask
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=attn_mask is None,
                                               dropout_p=dropout_p, enable_gqa=self.n_kv_head != self.n_head)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.swiglu = config.mlp == "swiglu"
        # SwiGLU's hidden width is 2/3 of 4x so the parameter count matches the GELU MLP
        hidden = int(8 * config.n_embd / 3) if self.swiglu else 4 * config.n_embd
        self.c_fc = nn.Linear(config.n_embd, 2 * hidden if self.swiglu else hidden, bias=config.bias)
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        h = self.c_fc(x)
        if self.swiglu:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = F.gelu(h, approximate="tanh")  # GPT-2's GELU
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.ln_1 = make_norm(config, config.n_embd)
        self.attn = CausalSelfAttention(config, layer_idx)
        self.ln_2 = make_norm(config, config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x, rope=None, attn_mask=None, kv_cache=None):
        x = x + self.attn(self.ln_1(x), rope, attn_mask, kv_cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config, i) for i in range(config.n_layer)]),
            ln_f=make_norm(config, config.n_embd),
        ))
        if config.pos == "learned":
            self.transformer.wpe = nn.Embedding(config.block_size, config.n_embd)
        else:
            hd = config.n_embd // config.n_head
            n_pairs = hd // 4 if config.pos == "coupled" else hd // 2       # pairs turned by the position
            cos, sin = rope_angles(n_pairs, config.block_size, config.rope_theta)   # (block_size, n_pairs)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
            if config.pos == "coupled":   # the other half: by place; a place is at most the block's length
                cos, sin = place_angles(hd // 4, config.block_size)
                self.register_buffer("place_cos", cos, persistent=False)
                self.register_buffer("place_sin", sin, persistent=False)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # the training scripts' grad_checkpoint=True: keep only each block's input for the backward pass and
        # recompute the rest of its activations there (about one more forward pass of compute)
        self.grad_checkpoint = False
        if config.tie_embeddings:
            self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)
        # GPT-2's scaled init of the projections into the residual stream
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding=True):
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and self.config.pos == "learned":
            n -= self.transformer.wpe.weight.numel()
        return n

    def forward(self, idx, targets=None, positions=None, attn_mask=None, kv_cache=None, places=None):
        """idx (B, T) token ids. positions (B, T) defaults to 0..T-1 (the engine passes its own for
        left-padded rows). attn_mask (B, 1, T, S) bool, True = may attend; None = plain causal.
        places (B, T, 2): each token's digit place and local position (places.py), which pos='coupled' uses
        instead of positions (and the other schemes ignore). A document sees only itself in the KV engine and
        in SFT, DPO and GRPO rows; packed pretraining windows pass attn_mask to keep it so.
        Returns logits (B, T, vocab) and, with targets (B, T; -1 = ignore), the mean cross-entropy."""
        B, T = idx.size()
        if kv_cache is not None and attn_mask is None:   # plain causal over the cached tokens and the new ones
            S = kv_cache.pos + T
            attn_mask = torch.ones(T, S, dtype=torch.bool, device=idx.device).tril(S - T)[None, None]  # (1, 1, T, S)
        if positions is None:
            if T > self.config.block_size:
                raise SystemExit(f"sequence of {T} tokens is longer than block_size {self.config.block_size}")
            positions = torch.arange(T, device=idx.device).expand(B, T)
        elif int(positions.max()) >= self.config.block_size:
            raise SystemExit(f"position {int(positions.max())} is past block_size {self.config.block_size}")
        x = self.transformer.wte(idx)  # (B, T, C)
        rope = None
        if self.config.pos == "learned":
            x = x + self.transformer.wpe(positions)
        elif self.config.pos == "rope":
            rope = (self.rope_cos[positions].unsqueeze(1), self.rope_sin[positions].unsqueeze(1))  # (B, 1, T, hd/2)
        else:
            if places is None or places.shape != (B, T, 2):
                raise SystemExit("pos='coupled' needs the (place, local position) of every token: pass places= "
                                 "(B, T, 2) from places.py")
            if int(places.max()) >= self.config.block_size:
                raise SystemExit(f"digit place or local position {int(places.max())} is past block_size "
                                 f"{self.config.block_size}")
            place, local = places[..., 0], places[..., 1]                               # (B, T) each
            cos = torch.cat([self.rope_cos[local], self.place_cos[place]], dim=-1)    # (B, T, hd/2)
            sin = torch.cat([self.rope_sin[local], self.place_sin[place]], dim=-1)
            rope = (cos.unsqueeze(1), sin.unsqueeze(1))                               # (B, 1, T, hd/2)
        x = self.transformer.drop(x)
        for block in self.transformer.h:
            if self.grad_checkpoint and torch.is_grad_enabled():
                x = checkpoint(block, x, rope, attn_mask, kv_cache, use_reentrant=False)
            else:
                x = block(x, rope, attn_mask, kv_cache)
        if kv_cache is not None:
            kv_cache.pos += T
        logits = self.lm_head(self.transformer.ln_f(x))  # (B, T, vocab)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type):
        # decay the 2-D weights (matmuls, embeddings); never biases or norm gains
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        fused = device_type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, **({"fused": True} if fused else {}))

    def flops_per_token(self, seq_len):
        """Training FLOPs per token: 6N for the matmuls plus attention's 12*L*d*T (PaLM appendix B)."""
        c = self.config
        return 6 * self.num_params() + 12 * c.n_layer * c.n_embd * seq_len

    def estimate_mfu(self, tokens_per_iter, seq_len, dt, peak_flops):
        """Model FLOPs utilisation: achieved training FLOP/s over the device's peak (passed in)."""
        return self.flops_per_token(seq_len) * tokens_per_iter / dt / peak_flops

    @classmethod
    def from_pretrained(cls, model_type="gpt2", hf_model=None, dropout=0.0, vocab_size=0):
        """Copy Hugging Face GPT-2 weights (needs `transformers`). `hf_model` lets tests pass a small
        random GPT2LMHeadModel built offline instead of downloading one. vocab_size: the tokenizer's, when it
        has more ids than GPT-2's 50,257 (tokenizer 'gpt2' adds <think>, </think> and <|end|>): the embedding
        grows to a multiple of 64, as nanoGPT pads it, and each new row starts at the mean of GPT-2's rows."""
        if hf_model is None:
            try:
                from transformers import GPT2LMHeadModel
            except ImportError:
                raise SystemExit("init_from='gpt2' needs the optional package transformers: pip install transformers")
            hf_model = GPT2LMHeadModel.from_pretrained(model_type)
        hc = hf_model.config
        grown = -(-vocab_size // 64) * 64 if vocab_size > hc.vocab_size else hc.vocab_size
        config = GPTConfig(block_size=hc.n_positions, vocab_size=grown, n_layer=hc.n_layer,
                           n_head=hc.n_head, n_embd=hc.n_embd, dropout=dropout, bias=True)
        model = cls(config)
        sd, sd_hf = model.state_dict(), hf_model.state_dict()
        # HF stores these as Conv1D (in, out); ours are Linear (out, in)
        transposed = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
        for k in sd:
            src = sd_hf[k]
            with torch.no_grad():
                if k.endswith(("wte.weight", "lm_head.weight")) and grown > hc.vocab_size:
                    sd[k][:hc.vocab_size].copy_(src)
                    sd[k][hc.vocab_size:] = src.mean(dim=0)
                else:
                    sd[k].copy_(src.t() if k.endswith(transposed) else src)
        return model


# -----------------------------------------------------------------------------
# log-probs of given tokens: SFT metrics, DPO and GRPO all score completions this way

def token_logprobs(logits, idx, temperature=1.0):
    """logps[b, t] = log p(idx[b, t+1] | idx[b, :t+1]): token t+1 is scored by the logits at position t.
    logits (B, T, vocab), idx (B, T) -> (B, T-1). Callers multiply by mask[:, 1:] (the completion mask
    shifted the same way). Dividing by the sampling temperature makes GRPO's ratio exactly 1 on-policy."""
    logits = logits[:, :-1].float() / temperature
    targets = idx[:, 1:]
    B, T, V = logits.shape
    return -F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T), reduction="none").view(B, T)
