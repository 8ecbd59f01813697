# GRPO on the small laptop model: about 4 minutes on 2 CPU cores (~1.9 s a step, 72% of it sampling)
# $ python train_grpo.py config/grpo_small.py
# $ python train_grpo.py config/grpo_small.py --init_from=out/dpo/ckpt.pt
out_dir = 'out/grpo'
data_dir = 'data/small'
init_from = 'out/sft/ckpt.pt'
eval_interval = 60
n_eval_problems = 350
# 16 prompts x 8 completions = 128 rollouts a step, sampled at temperature 1
prompts_per_step = 16
group_size = 8
max_new_tokens = 100          # the longest worked solution of data/small is about 50 tokens
temperature = 1.0
task_weights = None           # auto: practice where the start checkpoint's validation errors are (type and digit cell)
dynamic_sampling = True       # an SFT model gets most problems all right: those groups teach nothing
max_sampling_rounds = 4
# two clipped updates per batch of rollouts (the sampling is 72% of a step; the second update reuses it), no KL
loss_type = 'dapo'
scale_rewards = 'group'
num_iterations = 2
beta = 0.0
# each update also fits 32 worked solutions of sft_train.jsonl (PPO-ptx): without this anchor, practice on the
# weak cells broke their neighbours (x*b=c with a 3-digit x: 3 -> 40 test errors); KL (beta=0.1) did not help
sft_coef = 1.0
# measured from the speedrun's DPO checkpoint on the 7,000 test problems (README, GRPO): x+b=c 95.9% -> 99.1%,
# overall +0.4 [0.1, 0.7]; lr 2e-5 or 360 steps gained about as much on x+b=c; a-b needed 360 steps of a-b alone
max_iters = 120
learning_rate = 1.5e-5
min_lr = 1.5e-5
warmup_iters = 10
