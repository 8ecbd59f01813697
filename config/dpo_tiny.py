# a few seconds of DPO on the tiny data: for `bash speedrun.sh --tiny`, the tests and the notebooks (the pipeline
# runs, little is learned)
# $ python generate_pairs.py config/data_tiny.py --policy=out/tiny/sft/ckpt.pt
# $ python train_dpo.py config/dpo_tiny.py
out_dir = 'out/tiny/dpo'
data_dir = 'data/tiny'
init_from = 'out/tiny/sft/ckpt.pt'
eval_interval = 10
log_interval = 5
n_val_pairs = 64
n_eval_problems = 70
max_new_tokens = 64
batch_size = 8
max_iters = 20
warmup_iters = 2
