# the word-problem model: SFT on the stories of config/data_words.py (README: Word problems)
# $ python train_sft.py config/sft_words.py
out_dir = 'out/words_sft'
data_dir = 'data/words'
init_from = 'out/words_pretrain/ckpt.pt'
max_new_tokens = 160       # the longest solution has 116 tokens in training, 132 in test (new names split)
max_iters = 300
eval_interval = 100
