# GSM8K chain-of-thought SFT of GPT-2 small (124M, Hugging Face weights, block 1024) on a GPU node (issue 15).
# The data: GSM8K's train split less its last 500 problems (sft_val) as "Question: ...\nAnswer:" prompts and
# " <worked solution>\n#### N<|end|>" completions in GPT-2's BPE (tiktoken's ranks, downloaded once):
# $ python generate_pairs.py --family=gsm8k --tokenizer=gpt2 --name=gsm8k_gpt2
# $ torchrun --standalone --nproc_per_node=8 train_sft.py config/sft_gsm8k_gpt2.py   # or python, on one GPU
# writes out/sft_gsm8k_gpt2/ckpt.pt, which config/grpo_gsm8k_gpt2.py starts from; the greedy accuracy it logs is
# on sft_val (data/gsm8k_gpt2/test.jsonl, GSM8K's test split, is for eval.py)
out_dir = 'out/sft_gsm8k_gpt2'
data_dir = 'data/gsm8k_gpt2'
train_files = 'sft_train.jsonl'   # no sft_extra.jsonl: word problems have no task types
init_from = 'gpt2'
# 32 examples a step (gradient_accumulation_steps is split over the processes), 650 steps: 3 epochs of the
# 6,973 training problems, at a fine-tuning rate: a rate near pretraining's (6e-4) wipes out what GPT-2 knows
batch_size = 4
gradient_accumulation_steps = 8
max_iters = 650
learning_rate = 2e-5
min_lr = 2e-6
warmup_iters = 30
eval_interval = 100
log_interval = 10
n_eval_problems = 500          # all of sft_val
# GSM8K's 99th-percentile solution has 750 characters, its longest 1,230: roughly 250 and 400 GPT-2 tokens
# at ~3 characters a token (data/gsm8k_gpt2/meta.json's max_completion_tokens has the exact longest)
max_new_tokens = 300
dtype = 'bfloat16'
compile = True
