# the word-problem model on the test split's stories: templates, names and objects never seen in training
# $ python eval.py config/eval_words.py
# $ python eval.py config/eval_words.py --calculator=exact --out_dir=out/eval_words_calc
# $ python eval.py config/eval_words.py --source=gsm8k --shots=0 --out_dir=out/eval_words_gsm8k
out_dir = 'out/eval_words'
data_dir = 'data/words'
ckpt = 'out/words_pretrain/ckpt.pt,out/words_sft/ckpt.pt'
max_new_tokens = 140
