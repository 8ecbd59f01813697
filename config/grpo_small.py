# GRPO on the laptop model: train_grpo.py's defaults are this run (README: GRPO, with what each setting measured)
# $ python train_grpo.py config/grpo_small.py
# $ python train_grpo.py config/grpo_small.py --init_from=out/dpo/ckpt.pt
