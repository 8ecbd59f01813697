# DPO on the laptop model, from the SFT checkpoint, on the pairs mined from it: train_dpo.py's defaults are this
# run (README: DPO, with what each setting measured)
# $ python generate_pairs.py config/data_small.py --policy=out/sft/ckpt.pt     # pairs_onpolicy_{train,val}.jsonl
# $ python train_dpo.py config/dpo_small.py
# $ python train_dpo.py config/dpo_small.py --pairs_file=pairs_train.jsonl    # synthetic negatives instead
