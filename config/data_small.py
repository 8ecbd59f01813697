# the small laptop dataset (the defaults of generate_pairs.py): operands up to 3 digits, multipliers up to 3
# digits, divisors up to 2 (x*b=c: up to 3), and the held-out tests: test, test_uniform, test_length
# $ python generate_pairs.py config/data_small.py
name = 'small'
tasks = {
    "a_plus_b_q": ((1, 3), (1, 3)),
    "a_minus_b_q": ((1, 3), (1, 3)),
    "a_times_b_q": ((1, 3), (1, 3)),
    "a_over_b_q": ((1, 2), (1, 3)),          # divisor 1-99, quotient 0-999
    "x_plus_b_eq_c_q": ((1, 3), (1, 3)),     # x, b
    "b_minus_x_eq_c_q": ((1, 3), (1, 3)),    # b, x
    "x_times_b_eq_c_q": ((1, 3), (1, 3)),    # x, b (1-999)
}
n_train_per_type = 6000
sft_extra_by_type = {"a_times_b_q": 10000, "a_over_b_q": 10000, "x_times_b_eq_c_q": 10000}   # SFT only
n_val_per_type = 500
n_test_per_type = 1000
n_length_per_type = 200
