# evaluate the laptop model on the small dataset's held-out problems, 1,000 per task type: eval.py's defaults
# $ python eval.py config/eval_small.py --ckpt=out/pretrain/ckpt.pt,out/sft/ckpt.pt,out/dpo/ckpt.pt,out/grpo/ckpt.pt
# $ python eval.py config/eval_small.py --ckpt=... --source=test_uniform --out_dir=out/eval_uniform
# $ python eval.py config/eval_small.py --ckpt=... --source=test_length --out_dir=out/eval_length
