#!/usr/bin/env bash
# GCN-PHR on the YFCC100M-shaped data. Edit the hyperparameters here, as with the authors' commands.
# Generate the data once: python scripts/generate.py --preset yfcc100m   (or --scale 0.1 for a CPU-sized copy)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-Data/yfcc100m}
python train.py --data_path "$DATA" \
  --model_name GCN_PHR \
  --l_r 0.005 --weight_decay 1e-5 --batch_size 1024 --dim_latent 64 --num_layers 2 \
  --aggr_mode mean --scoring_mode cat \
  --num_epoch 30 --patience 5 --seed 2019 --topk 5,10 \
  "$@"
