# a tiny dataset for tests and notebooks: the small config's tasks with up to 2-digit operands, a few hundred
# problems per type (seconds)
# $ python generate_pairs.py config/data_tiny.py
name = 'tiny'
tasks = {t: ((1, 2), (1, 2)) for t in ("a_plus_b_q", "a_minus_b_q", "a_times_b_q", "a_over_b_q", "x_plus_b_eq_c_q",
                                       "b_minus_x_eq_c_q", "x_times_b_eq_c_q")}
n_train_per_type = 300
n_train_by_type = {}
sft_extra_by_type = {"a_times_b_q": 500, "a_over_b_q": 500, "x_times_b_eq_c_q": 500}
n_val_per_type = 50
n_test_per_type = 100
n_length_per_type = 20
policy_prompts = 500           # --policy=...: on-policy pairs mined from 500 prompts past the box
policy_box_prompts = 500       # and 500 inside the box
