# SFT of the tiny model: for `bash speedrun.sh --tiny`, the tests and the notebooks
# $ python train_sft.py config/sft_tiny.py
out_dir = 'out/tiny/sft'
data_dir = 'data/tiny'
init_from = 'out/tiny/pretrain/ckpt.pt'
batch_size = 16
max_iters = 100
eval_interval = 50
log_interval = 10
n_eval_problems = 70
max_new_tokens = 64
warmup_iters = 10
