#!/usr/bin/env bash
# The whole nanomath pipeline on the small configs, then the report card:
#   machine speed -> data -> pretrain -> SFT -> on-policy pairs -> DPO -> GRPO
#   -> eval (test, test_uniform, test_length) -> report.md
#
#   bash speedrun.sh            # runs the stages not done yet (a finished stage is skipped)
#   bash speedrun.sh --fresh    # deletes data/small and out/ and starts over
#   bash speedrun.sh --tiny     # the same pipeline on config/*_tiny.py in about a minute: data/tiny, out/tiny/
#                               # and out/tiny/report.md (a test runs it: every stage, every command)
#
# CPU by default; the scripts pick a GPU (and bf16) by themselves where there is one.
set -euo pipefail
cd "$(dirname "$0")"

size=small out=out report=report.md plots=plots n=500 n_length=50 fresh=0
for arg in "$@"; do
    case $arg in
        --fresh) fresh=1 ;;
        --tiny) size=tiny out=out/tiny report=out/tiny/report.md plots=out/tiny/plots n=20 n_length=10 ;;
        *) echo "usage: bash speedrun.sh [--tiny] [--fresh]" >&2; exit 2 ;;
    esac
done
if [ $fresh = 1 ]; then
    rm -rf "data/$size" "$out"
    if [ $size = small ]; then rm -f report.md; fi
fi
mkdir -p "$out/.done"
export PYTHONUNBUFFERED=1  # log lines appear as they happen, also when piped to a file

# stage NAME COMMAND...: run a stage unless it finished before; record its wall-clock time
stage() {
    local name=$1
    shift
    if [ -e "$out/.done/$name" ]; then
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
    echo "$name $((SECONDS - start))" > "$out/.done/$name"
}

# a stage that did not finish is run again from its start: --overwrite=True replaces what it left
stage machine  python report.py --out_root=$out --measure=True
stage data     python generate_pairs.py config/data_$size.py
stage pretrain python train_pretrain.py config/pretrain_$size.py --overwrite=True
stage sft      python train_sft.py config/sft_$size.py --overwrite=True
stage pairs    python generate_pairs.py config/data_$size.py --policy=$out/sft/ckpt.pt
stage dpo      python train_dpo.py config/dpo_$size.py --overwrite=True
stage grpo     python train_grpo.py config/grpo_$size.py --init_from=$out/dpo/ckpt.pt --overwrite=True
CKPTS=$out/pretrain/ckpt.pt,$out/sft/ckpt.pt,$out/dpo/ckpt.pt,$out/grpo/ckpt.pt
# 500 problems per type of each test set, 50 per type and length: four checkpoints' evaluations take ~5.5 minutes
stage eval     python eval.py config/eval_$size.py --ckpt=$CKPTS --n_per_type=$n --out_dir=$out/eval
stage eval_uniform python eval.py config/eval_$size.py --ckpt=$CKPTS --source=test_uniform --n_per_type=$n \
                   --out_dir=$out/eval_uniform
stage eval_length python eval.py config/eval_$size.py --ckpt=$CKPTS --source=test_length --n_per_type=$n_length \
                  --out_dir=$out/eval_length
python report.py --out_root=$out --report_path=$report --plots_dir=$plots
