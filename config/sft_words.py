# the word-problem model: SFT on the stories of config/data_words.py (README: Word problems)
# $ python train_sft.py config/sft_words.py
out_dir = 'out/words_sft'
data_dir = 'data/words'
train_files = 'sft_train.jsonl'   # no sft_extra.jsonl: word problems have no task types
init_from = 'out/words_pretrain/ckpt.pt'
max_new_tokens = 140       # the longest solution has 128 tokens (data/words/meta.json)
max_iters = 100            # 200 score higher but take pretraining + SFT past 10 minutes (README: Word problems)
learning_rate = 1e-3       # the model is still learning the stories (pretraining loss still falling), not
min_lr = 1e-4              # keeping a distribution it has learnt: a higher rate than arithmetic's SFT
forgetting_threshold = 1.0 # its pretraining val loss is mostly the questions' random numbers
eval_interval = 100
zero_unused = True         # and stay so through SFT
