# the word-problem model (words.py): pretraining on the stories of config/data_words.py
# $ python train_pretrain.py config/pretrain_words.py
out_dir = 'out/words_pretrain'
data_dir = 'data/words'
block_size = 256           # a story and its solution take at most 246 tokens; 512 (GSM8K's 2-shot prompts) was
                           # 1.55x slower a token
window = 256               # training rows as long as the context
batch_size = 64
pos = 'rope'               # digit places (pos='coupled') are for operands that grow; stories' numbers do not
max_iters = 400
eval_interval = 400
prompt_loss = True         # a story's question is text to learn, not random digits
zero_unused = True         # the BPE's ids that no story uses read as nothing: README, Word problems
