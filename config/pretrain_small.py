# the laptop model: train_pretrain.py's defaults are this run; what it measured is in the README (Pretraining)
# $ python train_pretrain.py config/pretrain_small.py
