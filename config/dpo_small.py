# DPO on the small laptop model, from the SFT checkpoint: under a minute on 2 CPU cores
# $ python train_dpo.py config/dpo_small.py
# $ python train_dpo.py config/dpo_small.py --pairs_file=pairs_onpolicy_train.jsonl   # generate_pairs.py --policy=...
out_dir = 'out/dpo'
data_dir = 'data/small'
init_from = 'out/sft/ckpt.pt'
pairs_file = 'pairs_train.jsonl'
eval_interval = 50
n_val_pairs = 500
n_eval_problems = 350
# 32 pairs a step, chosen and rejected in one forward pass of 64 sequences
beta = 0.5
loss_type = 'sigmoid'
batch_size = 32
max_iters = 100
# measured on the small pipeline's SFT checkpoint (97% greedy on 350 held-out problems): lr 1e-4 took it
# to 17% and 1e-5 with beta 0.1 to 87% (whole-completion pairs); step pairs with lr 1e-5, beta 0.5 keep it
learning_rate = 1e-5
min_lr = 1e-6
warmup_iters = 20
