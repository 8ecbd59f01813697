# fine-tune the 124M model of config/pretrain_gpt2.py (a GPU node):
# $ torchrun --standalone --nproc_per_node=8 train_sft.py config/sft_gpt2.py
out_dir = 'out/sft_gpt2'
data_dir = 'data/small'
init_from = 'out/pretrain_gpt2/ckpt.pt'
batch_size = 64
gradient_accumulation_steps = 8
learning_rate = 6e-5
min_lr = 6e-6
max_iters = 500
warmup_iters = 20
eval_interval = 100
dtype = 'bfloat16'
compile = True
