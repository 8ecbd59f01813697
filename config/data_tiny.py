# a tiny dataset for tests and notebooks: the small config's tasks, a few hundred problems per type (seconds)
# $ python generate_pairs.py config/data_tiny.py
name = 'tiny'
n_train_per_type = 300
n_val_per_type = 50
n_test_per_type = 100
n_length_per_type = 20
policy_prompts = 500           # --policy=...: on-policy pairs mined from 500 training prompts
