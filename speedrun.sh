#!/usr/bin/env bash
# The whole nanomath pipeline on the small configs, then the report card:
#   data -> pretrain -> SFT -> on-policy pairs -> DPO -> GRPO -> eval (test, test_ood) -> report.md
#
#   bash speedrun.sh            # runs the stages not done yet (a finished stage is skipped)
#   bash speedrun.sh --fresh    # deletes data/small and out/ and starts over
#
# CPU by default; the scripts pick a GPU (and bf16) by themselves where there is one.
set -euo pipefail
cd "$(dirname "$0")"

if [ "${1:-}" = "--fresh" ]; then
    rm -rf data/small out report.md
elif [ -n "${1:-}" ]; then
    echo "usage: bash speedrun.sh [--fresh]" >&2
    exit 2
fi
mkdir -p out/.done
export PYTHONUNBUFFERED=1  # log lines appear as they happen, also when piped to a file

# stage NAME COMMAND...: run a stage unless it finished before; record its wall-clock time
stage() {
    local name=$1
    shift
    if [ -e "out/.done/$name" ]; then
        echo "== $name: done before, skipped (bash speedrun.sh --fresh starts over)"
        return
    fi
    echo "== $name: $*"
    local start=$SECONDS
    if ! "$@"; then
        echo "speedrun: stage '$name' failed; fix the error above and run bash speedrun.sh again" \
             "(finished stages are skipped)" >&2
        exit 1
    fi
    echo "$name $((SECONDS - start))" > "out/.done/$name"
}

stage data     python generate_pairs.py config/data_small.py
stage pretrain python train_pretrain.py config/pretrain_small.py
stage sft      python train_sft.py config/sft_small.py
stage pairs    python generate_pairs.py config/data_small.py --policy=out/sft/ckpt.pt
stage dpo      python train_dpo.py config/dpo_small.py
stage grpo     python train_grpo.py config/grpo_small.py --init_from=out/dpo/ckpt.pt
CKPTS=out/pretrain/ckpt.pt,out/sft/ckpt.pt,out/dpo/ckpt.pt,out/grpo/ckpt.pt
stage eval     python eval.py config/eval_small.py --ckpt=$CKPTS --out_dir=out/eval
stage eval_ood python eval.py config/eval_small.py --ckpt=$CKPTS --source=test_ood --n_per_type=200 --out_dir=out/eval_ood
python report.py
