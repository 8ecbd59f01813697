# a few seconds of GRPO on the tiny data: for `bash speedrun.sh --tiny`, the tests and the notebooks (the pipeline
# runs, nothing is learned)
# $ python train_grpo.py config/grpo_tiny.py --init_from=out/tiny/dpo/ckpt.pt
out_dir = 'out/tiny/grpo'
data_dir = 'data/tiny'
init_from = 'out/tiny/sft/ckpt.pt'
eval_interval = 2
n_eval_problems = 70
prompts_per_step = 4
group_size = 4
max_new_tokens = 64
max_sampling_rounds = 2
# a tiny model gets every reward 0: every group has zero variance, so dynamic sampling would find none to keep
dynamic_sampling = False
max_iters = 2
warmup_iters = 0
learning_rate = 1e-4
min_lr = 1e-4
# and no group at the edge differs either: practise in the box (the pipeline runs; README, GRPO, has the edge)
practice = 'box'
