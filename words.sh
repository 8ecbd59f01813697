#!/usr/bin/env bash
# Word problems from scratch (README: Word problems): the project's BPE tokenizer -> GSM8K-like stories ->
# pretrain -> SFT -> eval on the test split's unseen templates, names and objects (without and with the
# calculator) -> GSM8K's test split. Each stage prints its wall-clock time; the training stages are the budget.
#
#   bash words.sh
set -euo pipefail
cd "$(dirname "$0")"
export PYTHONUNBUFFERED=1

stage() {   # stage NAME COMMAND...: run it and say how long it took
    local name=$1 start=$SECONDS
    shift
    echo "== $name: $*"
    "$@"
    echo "== $name: $((SECONDS - start)) s"
}

stage machine   python report.py --out_root=out/eval_words --measure=True   # its matmul GFLOP/s, to compare times
stage tokenizer python train_tokenizer.py --overwrite=True
stage data      python generate_pairs.py config/data_words.py
stage pretrain  python train_pretrain.py config/pretrain_words.py --overwrite=True
stage sft       python train_sft.py config/sft_words.py --overwrite=True
stage eval      python eval.py config/eval_words.py
stage eval_calc python eval.py config/eval_words.py --calculator=exact --ckpt=out/words_sft/ckpt.pt \
                    --out_dir=out/eval_words_calc
stage gsm8k     python eval.py config/eval_words.py --source=gsm8k --shots=0 --ckpt=out/words_sft/ckpt.pt \
                    --max_new_tokens=200 --out_dir=out/eval_words_gsm8k
stage gsm8k16   python eval.py config/eval_words.py --source=gsm8k --shots=0 --ckpt=out/words_sft/ckpt.pt \
                    --num_samples=16 --n_per_type=100 \
                    --max_new_tokens=200 --out_dir=out/eval_words_gsm8k16
