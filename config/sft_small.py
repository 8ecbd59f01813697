# supervised fine-tuning of the laptop model: loss on the completion only, ~2 minutes on 2 CPU cores
# $ python train_sft.py config/sft_small.py
out_dir = 'out/sft'
data_dir = 'data/small'
init_from = 'out/pretrain/ckpt.pt'
batch_size = 64
learning_rate = 1e-3
min_lr = 1e-4
max_iters = 600
warmup_iters = 20
eval_interval = 200
