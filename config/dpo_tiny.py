# a few seconds of DPO on the tiny data: for tests and notebooks (the pipeline runs, little is learned)
# $ python train_dpo.py config/dpo_tiny.py --init_from=out/sft_tiny/ckpt.pt
out_dir = 'out/dpo_tiny'
data_dir = 'data/tiny'
init_from = 'out/sft_tiny/ckpt.pt'
eval_interval = 10
log_interval = 5
n_val_pairs = 64
n_eval_problems = 70
max_new_tokens = 64
batch_size = 8
max_iters = 20
warmup_iters = 2
