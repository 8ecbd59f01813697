# DPO on the small dataset from the small SFT model (the defaults of train_dpo.py): a few CPU minutes
# $ python train_dpo.py config/dpo_small.py
out_dir = 'out/dpo'
data_dir = 'data/small'
init_from = 'out/sft/ckpt.pt'
pairs_file = 'pairs_train.jsonl'     # or pairs_onpolicy_train.jsonl (generate_pairs.py --policy=...)
beta = 0.1
loss_type = 'sigmoid'
batch_size = 32                      # pairs: 64 sequences per forward pass
max_iters = 300                      # ~10k pairs, a quarter of an epoch of the 42k training pairs
learning_rate = 1e-4                 # a tenth of SFT's: DPO moves a model that already works
min_lr = 1e-5
warmup_iters = 20
eval_interval = 100
log_interval = 10
