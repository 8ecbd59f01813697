# a 0.1M-parameter model on the tiny data in seconds: for `bash speedrun.sh --tiny`, the tests and the notebooks
# (the pipeline runs; little is learned)
# $ python train_pretrain.py config/pretrain_tiny.py
out_dir = 'out/tiny/pretrain'
data_dir = 'data/tiny'
n_layer = 2
n_head = 2
n_embd = 64
block_size = 320              # the longest test problem of data/tiny (a 4-digit x*b=c) has ~300 tokens
window = 192                  # the longest training document has 172
batch_size = 16
max_iters = 200
eval_interval = 50
eval_iters = 4
log_interval = 10
warmup_iters = 10
