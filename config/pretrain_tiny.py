# a 0.1M-parameter model on the tiny data in seconds: for `bash speedrun.sh --tiny`, the tests and the notebooks
# (the pipeline runs; little is learned)
# $ python train_pretrain.py config/pretrain_tiny.py
out_dir = 'out/tiny/pretrain'
data_dir = 'data/tiny'
n_layer = 2
n_head = 2
n_embd = 64
block_size = 128              # the longest document of data/tiny has 98 tokens
batch_size = 16
max_iters = 200
eval_interval = 50
eval_iters = 4
log_interval = 10
warmup_iters = 10
