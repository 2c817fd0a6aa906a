#!/usr/bin/env bash
# Every measurement that needs a GPU, in one go (estimated 8-10 minutes on an H100/H200; not yet run), for a session
# that is lent one. Prepare here: `../shared/gpu/prepare.sh` (Hydra wheels + a 64 px Imagenette in
# .device/), then run on the device, carrying .device:
#   bash scripts/gpu_check.sh            ($OUT collects the results: at most 8 files)
# Results: gpu.txt, benchmark.json (models / data / end_to_end with MFU), and metrics.json of the
# e2 presets with their wall times (e2_resnet's goal: >= 85% val top-1 in <= 60 s, all included).
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .device/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD VISION_EXP_DATA=$PWD/.device/data VISION_EXP_CACHE=/tmp/vx-cache \
       VISION_EXP_OUTPUT=/tmp/vx-outputs PYTHONUNBUFFERED=1
DATA="data.root=$VISION_EXP_DATA/imagenette2-64 data.cache_size=64 data.num_workers=8"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt"

python3 scripts/benchmark.py --device cuda --data-root "$VISION_EXP_DATA/imagenette2-64" \
  --json "$OUT/benchmark.json" 2>&1 | tail -20 | tee "$OUT/log.txt"

for preset in e2_resnet e2_vit e2_vit_enhanced; do
  start=$(date +%s.%N)
  python3 -m vision_exp.train experiment=$preset $DATA trainer.progress=log hydra.run.dir=/tmp/vx-runs/$preset \
    > "/tmp/vx-$preset.log" 2>&1
  end=$(date +%s.%N)
  tail -3 "/tmp/vx-$preset.log" >> "$OUT/log.txt"
  python3 - "$preset" "$start" "$end" "$OUT" <<'PY'
import json, sys
preset, start, end, out = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
metrics = json.load(open(f"/tmp/vx-runs/{preset}/metrics.json"))
metrics["command_wall_time_s"] = end - start  # process start to exit: imports, data cache, training, evaluation
json.dump(metrics, open(f"{out}/{preset}.json", "w"), indent=2)
print(preset, f"val {metrics.get('val_acc')}", f"wall {end - start:.1f} s")
PY
done
