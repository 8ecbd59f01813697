# the small laptop dataset (the defaults of generate_pairs.py): up to 3-digit operands, 1-digit multipliers and divisors
# $ python generate_pairs.py config/data_small.py
name = 'small'
tasks = {
    "a_plus_b_q": ((1, 3), (1, 3)),
    "a_minus_b_q": ((1, 3), (1, 3)),
    "a_times_b_q": ((1, 3), (1, 1)),
    "a_over_b_q": ((1, 1), (1, 3)),          # divisor 2-9, quotient 1-999
    "x_plus_b_eq_c_q": ((1, 3), (1, 3)),     # x, b
    "b_minus_x_eq_c_q": ((1, 3), (1, 3)),    # b, x
    "x_times_b_eq_c_q": ((1, 3), (1, 1)),    # x, b (2-9)
}
# a/b and x*b=c hold 7,992 and 8,000 problems: test + val + train must fit in them
n_train_per_type = 6000
n_val_per_type = 500
n_test_per_type = 1000
n_test_ood_per_type = 1000
