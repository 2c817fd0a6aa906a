#!/usr/bin/env bash
# Every measurement that needs a GPU, in one call that fits a short lease. Prepare here with
# `../shared/gpu/prepare.sh` (Hydra wheels + a 64 px Imagenette in the ignored .device/), then run
# on the GPU machine from the project root, carrying .device:
#   bash scripts/gpu_check.sh
# Runs go one after another unless PARALLEL says otherwise: with three side by side on an H200
# (2026-11-27) each trained 1.6-2.6x slower than alone (e2_vit 6,165 img/s against 9,638,
# e2_vit_enhanced 2,978 against 7,664): the card was already busy, and sharing it mostly delays the
# first results and leaves more runs unfinished at the lease's end. Each run is capped by RUN_LIMIT (default 240 s)
# and by what is left of BUDGET_S (default 480 s), and stopped with SIGTERM (the trainer checkpoints and records the interruption)
# when it overruns. Most important first: e2_resnet (goal: >= 85% val top-1 in <= 60 s, process
# start to exit; alone, as it is the teacher of the next runs), then candidates on e2_vit_distilled
# (e2_vit_enhanced taught by that e2_resnet, soft targets: 80.99% and 80.76% in two leases, the best
# ViT so far, 4.7 points behind its teacher). The fifth lease (2026-11-28) settled how much RandAugment
# it wants: two ops per image, as it has (three: 79.64; none: 77.94, fitting 96% of its training
# images); weight 0.9 on the teacher tied weight 0.5 (80.48 against 80.84 at epoch 47, where the budget
# stopped it: not planned again). So next: a wider ViT on coarser tokens (width 384, ViT-S's, at 8x8
# patches: 64 tokens instead of 256, the same multiply-adds in its linear layers and a quarter of them in
# attention; on the CPU, twice the width at 8x8 led the stem's width-128 runs by 1.1 points at 10 epochs
# on the mean of two seeds, 74.36 against 73.25, and taught by 2.5 on each of two seeds, 76.36 against 73.88
# on their mean, 2026-12-05), then that wide ViT with mixup/cutmix, then mixup/cutmix under the teacher (Beyer et al. 2022: a patient
# teacher labelling mixed images is what lets a student match it; untaught, mixup cost 1.9 points with
# the AdamW bundle on the H200, and 2.9 with the teacher at 10 CPU epochs, where the ViT underfits), then
# without label smoothing (the teacher's predictions are soft targets already); then e2_vit_distilled as
# it is, the same-lease reference, with one of the 16 cores left to the trainer (data.num_workers=15: the
# augmentation is the same for any worker count, so only its speed against distill_no_ls, the same work on 16
# workers, changes: does a quarter of each epoch wait for data because the workers crowd the trainer?);
# then e2_vit_enhanced (the recipes issue's goal compares it with e2_resnet; measured before: 78.52), EMA
# and AdamW on it (before it had its conv stem they led it by 1.9 and 1.5 points when a call's limit stopped
# them at epoch 33 of 50; EMA on e2_vit_distilled tied it, 80.56
# against 80.99, so it is not planned), and last e2_vit (67.77 in two leases, epoch by epoch the same).
# At the end the benchmarks, all measured before: the loader alone with RandAugment on all cores
# (benchmark_data.json; 10,940 images/s on 16 workers against 5,371 in one process on 2026-11-28), then
# the models.
# After the teacher, a resume check: its last.pt goes on for one epoch on the GPU (resume_on_gpu).
# $OUT (default /tmp/gpu_check) receives env.txt, log.txt, results.json (each run's metrics.json
# plus its process wall time), results.md (scripts/gpu_results.py's table), benchmark_data.json, benchmark_e2.json,
# benchmark.json and logs.tar.gz; the results and the logs after every step, so that a call cut short still has
# those of the steps it finished. Every call trains in a folder of its own under $WORK (only the
# decoded-image cache is shared), so a second call on the same warm machine reports its own runs.
# A set-up every run would fail on (an $OUT it cannot write, a Python without torch, no 64 px copy, a
# misspelt or repeated run name) ends the call at once with exit status 1; a run naming a file an earlier
# run did not write (a student whose teacher failed) is skipped, not started.
# Other runs instead: bash scripts/gpu_check.sh "NAME PRESET [override ...]" ...; {runs} in an override
# names this call's run folders, e.g. a teacher trained earlier in the same call:
#   bash scripts/gpu_check.sh "t e2_resnet" "s e2_vit_distilled loss.distillation.teacher={runs}/t/checkpoints/best.pt"
# A dry run on the CPU: GPU_CHECK_OVERRIDES="trainer.train_samples=64 ..." BENCH_ARGS=--quick PYTHON=.venv/bin/python
# (those overrides come last, over each step's own: resume_on_gpu's one more epoch becomes the teacher's own budget,
# and that step is refused, "nothing is left to train", in a second; the others run shrunk)
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
BUDGET_S=${BUDGET_S:-480}
PARALLEL=${PARALLEL:-1}
PY=${PYTHON:-python3}
WORK=${WORK:-/tmp/vx}
START=$(date +%s)
# A set-up that every run would trip on ends the call at once: run by run it would spend the lease on start-ups.
fail() { echo "error: $*" >&2; exit 1; }
mkdir -p "$OUT" "$WORK" || fail "cannot make OUT=$OUT or WORK=$WORK"
# This call's files only: on a warm machine an earlier call's log.txt would be appended to, and its benchmark
# JSON would pass for this call's where this call does not reach that step.
: 2>/dev/null > "$OUT/log.txt" || fail "OUT=$OUT is not writable: no result could come back"
rm -f "$OUT/benchmark_data.json" "$OUT/benchmark_e2.json" "$OUT/benchmark.json"
CALL=$(mktemp -d "$WORK/call-$START-XXXX") || fail "cannot make a folder in WORK=$WORK"  # this call's logs, runs and step times
mkdir "$CALL/logs"
if [ -d .device/whl ] && ! "$PY" -c "import hydra" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --target "$WORK/site" .device/whl/*.whl || fail "the wheels in .device/whl did not install"
  export PYTHONPATH="$WORK/site:$PWD"
fi
export PYTHONPATH=${PYTHONPATH:-$PWD} VISION_EXP_DATA=${VISION_EXP_DATA:-$PWD/.device/data} \
       VISION_EXP_CACHE=$WORK/cache VISION_EXP_OUTPUT=$WORK/outputs PYTHONUNBUFFERED=1
DATA_ROOT=$VISION_EXP_DATA/imagenette2-64
[ -d "$DATA_ROOT/train" ] && [ -d "$DATA_ROOT/val" ] || fail "no train/ and val/ in $DATA_ROOT: make the 64 px copy" \
  "before the lease (../shared/gpu/prepare.sh) and carry .device, or set VISION_EXP_DATA"
read -r -a EXTRA <<< "${GPU_CHECK_OVERRIDES:-}"
read -r -a BENCH <<< "${BENCH_ARGS:-}"
# nproc answers OMP_NUM_THREADS when it is set, as it is below for the runs: count the cores once, without it.
CORES=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)

{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
  "$PY" -c "import sys, torch, torchvision, timm, hydra, vision_exp; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, 'torchvision', torchvision.__version__, 'timm', timm.__version__, 'hydra', hydra.__version__)"
  IMPORTS=$?
  echo "cores $CORES, PARALLEL=$PARALLEL, BUDGET_S=$BUDGET_S"; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
((IMPORTS == 0)) || fail "$PY cannot import what the runs need (env.txt above says why); run from the project root"

# step NAME LIMIT_S COMMAND...: run when at least NEED_S (default 20) seconds of the budget are left,
# capped by what is left. The results keep the order of SEQ, which the main shell advances before
# each step: runs started side by side take their own start times in an order of their own.
SEQ=0
step() {
  local name=$1 limit=$2 left
  shift 2
  left=$((BUDGET_S - ($(date +%s) - START)))
  if ((left < ${NEED_S:-20})); then echo "$name: skipped (budget spent)" | tee -a "$OUT/log.txt"; return; fi
  ((limit > left)) && limit=$left
  local t0 t1 rc
  t0=$(date +%s.%N)
  timeout --kill-after=20 "$limit" "$@" > "$CALL/logs/$name.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  echo "$name $rc $t0 $t1 $SEQ" >> "$CALL/times.txt"
  local summary
  summary=$(printf '%s: exit %s in %.1f s (limit %s s)\n' "$name" "$rc" "$(awk "BEGIN{print $t1 - $t0}")" "$limit"
            tail -4 "$CALL/logs/$name.log")
  echo "${summary%%$'\n'*}"
  # Under a lock: bash writes line by line, so runs ending together would interleave their lines.
  { flock 9; echo "$summary" >> "$OUT/log.txt"; } 9>> "$CALL/log.lock"
  collect > /dev/null  # after every step: a call cut short (its lease spent) still sends back what finished
}

collect() {  # results.json, results.md and logs.tar.gz of the steps finished so far
  "$PY" scripts/gpu_results.py "$CALL" "$OUT"
  local archive="$OUT/.logs.tar.gz.tmp-$BASHPID"  # then renamed: runs side by side collect too
  tar -czf "$archive" -C "$CALL" logs $(cd "$CALL" && ls -d runs/*/metrics.jsonl runs/*/train.log runs/*/config.yaml 2>/dev/null) \
    && mv "$archive" "$OUT/logs.tar.gz"
}

train() {  # train NAME PRESET [overrides...]
  local name=$1 preset=$2
  shift 2
  # The copy is 64 px already: stored as it is and evaluated whole (crop_pct 1), as the recorded runs were.
  # A training run needs a minute to be worth starting (one e2 epoch takes 1-4 s, start-up ~10 s).
  NEED_S=60 step "$name" "$LIMIT" "$PY" -m vision_exp.train "experiment=$preset" "data.root=$DATA_ROOT" data.cache_size=64 \
    data.crop_pct=1.0 "data.num_workers=$CORES_PER_RUN" trainer.progress=log "hydra.run.dir=$CALL/runs/$name" "$@" "${EXTRA[@]}"
}

# missing_input WORD...: the first file of this call's runs ({runs}/...) that the words name and that is not there.
missing_input() {
  local word
  for word in "$@"; do
    if [[ $word == *"$CALL/runs/"* && ! -e ${word#*=} ]]; then echo "${word#*=}"; return; fi
  done
}

# pool LIMIT SPEC...: train each "NAME PRESET [override ...]", PARALLEL at a time, in the order given.
# A run naming a file of an earlier run that did not write it (a teacher that failed) is skipped: it would
# fail anyway, after a start-up that costs the lease 10-30 s.
pool() {
  local limit=$1 spec words runs='{runs}' missing
  shift
  for spec in "$@"; do
    while (($(jobs -rp | wc -l) >= PARALLEL)); do wait -n; done
    read -r -a words <<< "${spec//"$runs"/$CALL/runs}"
    missing=$(missing_input "${words[@]}")
    if [ -n "$missing" ]; then
      echo "${words[0]}: skipped (its earlier run did not write $missing)" | tee -a "$OUT/log.txt"
      continue
    fi
    ((++SEQ))
    LIMIT=$limit train "${words[@]}" &
  done
  wait
}

# The plan's runs, each "NAME PRESET [override ...]", most important first.
PLAN=(
  "e2_resnet e2_resnet"
  "distill_wide8 e2_vit_distilled model.patch_size=8 model.embed_dim=384 loss.distillation.teacher={runs}/e2_resnet/checkpoints/best.pt"
  "distill_wide8_mixup e2_vit_distilled model.patch_size=8 model.embed_dim=384 enhancement=mixup_cutmix loss.distillation.teacher={runs}/e2_resnet/checkpoints/best.pt"
  "distill_mixup e2_vit_distilled enhancement=mixup_cutmix loss.distillation.teacher={runs}/e2_resnet/checkpoints/best.pt"
  "distill_no_ls e2_vit_distilled loss.label_smoothing=0 loss.distillation.teacher={runs}/e2_resnet/checkpoints/best.pt"
  "e2_vit_distilled e2_vit_distilled data.num_workers=15 loss.distillation.teacher={runs}/e2_resnet/checkpoints/best.pt"
  "e2_vit_enhanced e2_vit_enhanced"
  "enh_ema e2_vit_enhanced enhancement=ema"
  "enh_adamw e2_vit_enhanced optimizer=adamw"
  "e2_vit e2_vit"
)
CORES_PER_RUN=$((CORES / PARALLEL > 0 ? CORES / PARALLEL : 1))  # for its threads and loader workers
export OMP_NUM_THREADS=$CORES_PER_RUN
RUN_LIMIT=${RUN_LIMIT:-240}  # a stuck run must not take the whole lease
if (($#)); then  # ad-hoc runs instead of the plan
  declare -A NAMED=()
  for spec in "$@"; do  # a mistyped call is refused whole, before any run: not found out run by run
    read -r -a words <<< "$spec"
    ((${#words[@]} >= 2)) || fail "\"$spec\": each run is \"NAME PRESET [override ...]\""
    [ -z "${NAMED[${words[0]}]:-}" ] || fail "two runs named ${words[0]}: each needs a run folder and a results row of its own"
    NAMED[${words[0]}]=1
  done
  pool "$RUN_LIMIT" "$@"
else
  pool "$RUN_LIMIT" "${PLAN[0]}"  # the teacher, finished before its student starts whatever PARALLEL says
  # Resuming on a GPU (until 7c89bf8 the checkpoint's RNG states were mapped onto it and could not be restored):
  # one epoch more of the teacher, from its last.pt into a folder of its own; about 15 s.
  pool 60 "resume_on_gpu e2_resnet trainer.resume={runs}/e2_resnet/checkpoints/last.pt trainer.train_samples=482919"
  pool "$RUN_LIMIT" "${PLAN[@]:1}"
  ((++SEQ))
  step benchmark_data 60 "$PY" scripts/benchmark.py --sections data --device auto --workers "$CORES" --data-repeats 1 \
    --data-epochs 2 --data-root "$DATA_ROOT" --json "$OUT/benchmark_data.json" "${BENCH[@]}"
  ((++SEQ))
  step benchmark_e2 80 "$PY" scripts/benchmark.py --sections models --scale e2 --device auto --steps 20 --warmup 10 \
    --repeats 3 --json "$OUT/benchmark_e2.json" "${BENCH[@]}"
  ((++SEQ))
  step benchmark 120 "$PY" scripts/benchmark.py --sections models end_to_end memory --device auto --steps 20 --warmup 10 \
    --repeats 3 --data-root "$DATA_ROOT" --json "$OUT/benchmark.json" "${BENCH[@]}"
fi

collect
echo "total $(($(date +%s) - START)) s"
