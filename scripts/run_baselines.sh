#!/usr/bin/env bash
# Every baseline and floor through the same loop on one dataset: DATA=Data/instagram bash scripts/run_baselines.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-Data/demo}
for MODEL in UTM ConTagNet CSMN USHM popularity user_popularity; do
  python train.py --data_path "$DATA" --model_name "$MODEL" --l_r 0.005 --batch_size 256 --num_epoch 20 \
    --no_progress "$@"
done
