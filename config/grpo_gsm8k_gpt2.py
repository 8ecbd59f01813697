# GRPO on GSM8K from the SFT model of config/sft_gsm8k_gpt2.py (GPT-2 124M) on a GPU node (issue 15): the prompts are
# GSM8K's training questions (practice='file': data/gsm8k_gpt2/sft_train.jsonl, never sft_val or test), and the reward
# is 1 when the completion's '#### N' is the answer (tasks.is_correct)
# $ torchrun --standalone --nproc_per_node=8 train_grpo.py config/grpo_gsm8k_gpt2.py
# writes out/grpo_gsm8k_gpt2/ckpt.pt; the greedy accuracy it logs is on sft_val
out_dir = 'out/grpo_gsm8k_gpt2'
data_dir = 'data/gsm8k_gpt2'
init_from = 'out/sft_gsm8k_gpt2/ckpt.pt'
average_weight = 1.0           # the trained weights alone: no average was measured on GSM8K
practice = 'file'
# per process: 8 x 2 = 16 prompts a step. A process's update is one forward over its 32 completions, whose
# (B, T, 50,260) logits cost ~30 bytes an entry in the loss (fp32 copies, log-softmax, entropy): ~20 GB at T=450,
# so on one GPU keep prompts_per_step x group_size near 64 (--prompts_per_step=4)
prompts_per_step = 2
group_size = 16                # a large group: an SFT'd GPT-2 solves few GSM8K problems, and a group needs a right one
# GSM8K's 99th-percentile solution has 750 characters, its longest 1,230: roughly 250 and 400 GPT-2 tokens
# at ~3 characters a token (data/gsm8k_gpt2/meta.json's max_completion_tokens has the exact longest)
max_new_tokens = 300
n_eval_problems = 500          # all of sft_val
eval_interval = 25
max_iters = 200
# a tenth of SFT's rate, constant: RL moves a fine-tuned model a little at a time
learning_rate = 2e-6
min_lr = 2e-6
dtype = 'bfloat16'
compile = True
