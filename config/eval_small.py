# evaluate the small model on the small dataset's held-out problems, 1,000 per task type
# $ python eval.py config/eval_small.py --ckpt=out/pretrain/ckpt.pt,out/sft/ckpt.pt,out/dpo/ckpt.pt,out/grpo/ckpt.pt
# $ python eval.py config/eval_small.py --ckpt=... --source=test_ood --out_dir=out/eval_ood
out_dir = 'out/eval'
data_dir = 'data/small'
source = 'test'
n_per_type = 1000
# the longest test prompt has 15 tokens, so 100 new tokens fit block_size 128; test completions reach
# ~50 tokens, but test_ood's 4-digit products reach ~115: eval.py says how many cannot be finished
max_new_tokens = 100
batch_size = 500
