# DPO on the small laptop model, from the SFT checkpoint (the defaults of train_dpo.py): about 4 minutes on
# 2 busy CPU cores (~0.8 s an iteration with OMP_NUM_THREADS=1, plus three evals)
# $ python train_dpo.py config/dpo_small.py
# $ python train_dpo.py config/dpo_small.py --pairs_file=pairs_onpolicy_train.jsonl   # generate_pairs.py --policy=...
out_dir = 'out/dpo'
data_dir = 'data/small'
init_from = 'out/sft/ckpt.pt'
pairs_file = 'pairs_train.jsonl'
eval_interval = 100
n_val_pairs = 500
n_eval_problems = 350
# 32 pairs a step, chosen and rejected in one forward pass of 64 sequences; 200 steps see 6,400 of the ~82k pairs
beta = 0.1
loss_type = 'sigmoid'
batch_size = 32
max_iters = 200
learning_rate = 1e-4            # a tenth of SFT's: DPO adjusts a model that already works
min_lr = 1e-5
warmup_iters = 20
