# GRPO on the small laptop model, from the SFT checkpoint: about 2 minutes on 2 CPU cores (~2 s a step)
# $ python train_grpo.py config/grpo_small.py
# $ python train_grpo.py config/grpo_small.py --init_from=out/dpo/ckpt.pt
out_dir = 'out/grpo'
data_dir = 'data/small'
init_from = 'out/sft/ckpt.pt'
eval_interval = 20
n_eval_problems = 350
# 16 prompts x 8 completions = 128 rollouts a step, sampled at temperature 1
prompts_per_step = 16
group_size = 8
max_new_tokens = 100          # the longest worked solution of data/small is about 50 tokens
temperature = 1.0
task_weights = None           # auto: more practice on the types the SFT model gets wrong
dynamic_sampling = True       # an SFT model gets the easy types all right: those groups teach nothing
max_sampling_rounds = 4
# one update per batch, no KL: REINFORCE with a group baseline; try --beta=0.04 --num_iterations=2
loss_type = 'dapo'
scale_rewards = 'group'
num_iterations = 1
beta = 0.0
max_iters = 60
learning_rate = 5e-5
min_lr = 5e-6
warmup_iters = 10
