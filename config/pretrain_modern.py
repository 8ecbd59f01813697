# the laptop model with the rest of the modern small-model stack (RoPE is the default): RMSNorm, SwiGLU,
# grouped-query attention (2 key/value heads for 4 query heads), QK-norm, untied embeddings, no biases
# $ python train_pretrain.py config/pretrain_small.py config/pretrain_modern.py
out_dir = 'out/pretrain_modern'
norm = 'rmsnorm'
mlp = 'swiglu'
n_kv_head = 2
qk_norm = True
tie_embeddings = False
bias = False
