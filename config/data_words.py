# word problems (words.py): GSM8K-like stories of 2-4 steps; the test split's templates, names and objects
# never occur in training. The tokenizer is the project's BPE (train_tokenizer.py writes it first).
# $ python train_tokenizer.py && python generate_pairs.py config/data_words.py
name = 'words'
family = 'words'
tokenizer = 'bpe:data/tokenizers/words.json'
n_stories = 40000
n_val_per_type = 500
n_test_per_type = 1000
