# evaluate the small model on the small dataset's held-out problems, 1,000 per task type
# $ python eval.py config/eval_small.py --ckpt=out/pretrain/ckpt.pt,out/sft/ckpt.pt,out/dpo/ckpt.pt,out/grpo/ckpt.pt
# $ python eval.py config/eval_small.py --ckpt=... --source=test_ood --out_dir=out/eval_ood
out_dir = 'out/eval'
data_dir = 'data/small'
source = 'test'
n_per_type = 1000
# the longest prompt has 15 tokens (test) or 17 (test_ood), so 100 new tokens fit block_size 128;
# the reference completions reach 51 tokens on test and 63 on test_ood
max_new_tokens = 100
batch_size = 500
