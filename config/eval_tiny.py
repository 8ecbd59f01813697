# evaluate the tiny pipeline's checkpoints on 20 test problems per type: for `bash speedrun.sh --tiny`
# $ python eval.py config/eval_tiny.py --ckpt=out/tiny/sft/ckpt.pt
out_dir = 'out/tiny/eval'
data_dir = 'data/tiny'
n_per_type = 20
max_new_tokens = 64
