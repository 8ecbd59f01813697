# supervised fine-tuning of the laptop model: train_sft.py's defaults are this run (README: SFT)
# $ python train_sft.py config/sft_small.py
