# GPT-2 small's shape (124M parameters) for a multi-GPU node:
# $ torchrun --standalone --nproc_per_node=8 train_pretrain.py config/pretrain_gpt2.py
# the global batch is 64 sequences x 8 accumulation steps x 384 tokens = 197k tokens per iteration
# (gradient_accumulation_steps is split across the processes: it must divide by their number)
out_dir = 'out/pretrain_gpt2'
data_dir = 'data/small'
n_layer = 12
n_head = 12
n_embd = 768
block_size = 640           # the longest test problem (a 6-digit x*b=c) has ~610 tokens
batch_size = 64
gradient_accumulation_steps = 8
learning_rate = 6e-4
min_lr = 6e-5
max_iters = 5000
warmup_iters = 200
eval_interval = 500
log_interval = 10
weight_decay = 0.1
beta2 = 0.95
dtype = 'bfloat16'
compile = True
