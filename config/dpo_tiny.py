# DPO on the tiny dataset, for tests and notebooks: seconds on a CPU
# $ python generate_pairs.py config/data_tiny.py && python train_dpo.py config/dpo_tiny.py --init_from=...
out_dir = 'out/dpo_tiny'
data_dir = 'data/tiny'
init_from = 'out/sft_tiny/ckpt.pt'
batch_size = 8
max_iters = 20
warmup_iters = 2
eval_interval = 10
log_interval = 5
n_val_pairs = 64
n_eval_problems = 70                 # 10 per type
max_new_tokens = 64
