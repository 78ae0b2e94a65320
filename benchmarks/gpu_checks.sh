#!/usr/bin/env bash
# Every GPU check of the project in one run, for a short-lived GPU machine, within BUDGET seconds
# (default 540: 9 minutes; prepare what it needs with benchmarks/prepare_gpu_carry.sh, whose header
# has the command):
#   1. the CUDA tests (-m gpu of tests/train/test_cuda.py: auto speed options, CPU/GPU edit parity,
#      fp32 resume; of tests/train/test_graphs.py: replayed CUDA-graph steps track the eager step,
#      a graph run resumes on its curve);
#   2. benchmarks/train_step.py for the last stage (BENCH_STAGES), batch 48 and 256: images/s of
#      eager fp32, the optimised eager step and CUDA graphs, side by side in one run;
#   3. benchmarks/step_profile.py: that stage's device time by component (G, D, identity network
#      forward and backward, optimiser, copies) at the same batches, appended to train_step.md;
#   4. the recipe's whole three-stage schedule, end to end, timed, capture and warm-up included
#      (`facegan train`, train.cuda_graphs = "auto": on);
#   5. oracle quality of that model on 8 test and 8 training subjects (what `facegan eval` reports);
#   6. with COMPILE=1: train_step.py for the last stage with torch.compile (no gain measured on an
#      H100 at batch 48, and minutes of compilation);
#   7. only when asked (PARTS=real, in a call of its own: it needs the whole budget): real faces
#      at 128 px, benchmarks/real_faces.py on the set that `REAL=... prepare_gpu_carry.sh` put in
#      .gpu/real, one held-out split (REAL_SPLITS), two recipes trained side by side on the GPU:
#      "paper" = $RECIPE on the prepared faces, "options" = the same plus the real-face options of
#      recipes/exprgan-real-quick.toml (same-person pairs, z 200, source blend + source-keep);
#      each judged by FER, dlib and Fisherfaces beside the judges' ceilings -> real_<variant>.json.
# Each part has its own time limit, cut to what is left of BUDGET, and the script goes on when one
# fails (its exit status says whether all passed); everything lands in $OUT (log.txt,
# train_step.{json,md}, decoder_speed.md, run.json, log.jsonl, samples.png, quality.json) -- eight
# files at most, what a lent machine hands back (COMPILE=1 adds train_step_compile.json: set
# COPY_LOG=0 then).
#
#   OUT=runs/gpu bash benchmarks/gpu_checks.sh
#   PARTS="train quality" OUT=runs/gpu bash benchmarks/gpu_checks.sh   # only parts 3 and 4
#   # two variants of the recipe side by side on one GPU (each its own OUT and RUN):
#   PARTS="train quality" COPY_LOG=0 OUT=$OUT/a RUN=/tmp/a bash benchmarks/gpu_checks.sh &
#   PARTS="train quality" COPY_LOG=0 OUT=$OUT/b RUN=/tmp/b TRAIN_SET="--set data.include_neutral=true" \
#       bash benchmarks/gpu_checks.sh & wait
#   # plumbing check on a CPU, in about two minutes (the tiny test recipe, batch 8 and 16; the
#   # oracles the test suite trained, else the quality part trains them first, past its limit):
#   OUT=/tmp/gc DEVICE=cpu FACEGAN_CACHE=$PWD/.cache/facegan-tests bash benchmarks/gpu_checks.sh
#   # the real-face part alone, on the device (after REAL=... prepare_gpu_carry.sh here):
#   PARTS=real OUT=$OUT bash benchmarks/gpu_checks.sh
#   # its plumbing on a CPU (the tiny recipe at 16 px on a prepared set; a few minutes):
#   PARTS=real DEVICE=cpu REAL_DATA=data/tw OUT=/tmp/gcr bash benchmarks/gpu_checks.sh
set -u
DEVICE=${DEVICE:-cuda}
if [ "$DEVICE" = cpu ]; then   # a dry run: the same parts on the tiny recipe
    RECIPE=${RECIPE:-tests/fixtures/tiny.toml}
    BATCHES=${BATCHES:-8 16}
    REAL_SIZE=${REAL_SIZE:-16}
fi
OUT=${OUT:-runs/gpu-checks}
RECIPE=${RECIPE:-recipes/exprgan.toml}
BATCHES=${BATCHES:-48 256}
BUDGET=${BUDGET:-540}           # seconds for the whole script; each part's limit is cut to what is left
RUN=${RUN:-/tmp/gpu-checks-run}
LAST_STAGE=${LAST_STAGE:-refining}
FACEGAN=${FACEGAN:-facegan}   # or "python3 -m facegan_kit"
PARTS=${PARTS:-tests bench profile train quality}   # which parts run (COMPILE=1 adds the compile one; "real")
BENCH_STAGES=${BENCH_STAGES:-$LAST_STAGE}           # stages train_step.py measures ("" = all)
TRAIN_LIMIT=${TRAIN_LIMIT:-420}
QUALITY_LIMIT=${QUALITY_LIMIT:-150}
TRAIN_SET=${TRAIN_SET:-}        # extra "--set key=value ..." for the training run (a variant)
COPY_LOG=${COPY_LOG:-1}         # 0: leave log.jsonl behind (two variants must fit in 8 files)
REAL_DATA=${REAL_DATA:-.gpu/real}          # the "real" part: a prepared set, its held-out splits (indices
REAL_SPLITS=${REAL_SPLITS:-0}              # into real_faces.py's), variants and time limit
REAL_VARIANTS=${REAL_VARIANTS:-paper options}
REAL_LIMIT=${REAL_LIMIT:-500}
REAL_SIZE=${REAL_SIZE:-128}
REAL_SET=${REAL_SET:-}                     # extra "--set key=value ..." for every real-face run
REAL_KEEP=${REAL_KEEP:-0.2}                # the "options" variant's source-keep weight
mkdir -p "$OUT"
LOG=$OUT/log.txt
export PYTHONUNBUFFERED=1

CURRENT=""
FAILED=""
part() { CURRENT=$1; echo "== $1 ($(date -u +%T), $((BUDGET - SECONDS)) s of the budget left)" | tee -a "$LOG"; }
# limit SECONDS CMD...: run with a time limit (cut to what is left of BUDGET), output to the log,
# note the exit status and the time; a failed or skipped part is named in the final line.
limit() {
    local t=$1 t0=$SECONDS left=$((BUDGET - SECONDS))
    shift
    [ "$t" -gt "$left" ] && t=$left
    if [ "$t" -lt 5 ]; then
        echo "-- skipped: the budget of $BUDGET s is spent" | tee -a "$LOG"
        FAILED="$FAILED [$CURRENT: skipped]"
        return
    fi
    timeout "$t" "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    echo "-- rc=$rc in $((SECONDS - t0)) s" | tee -a "$LOG"
    [ "$rc" = 0 ] || FAILED="$FAILED [$CURRENT: rc=$rc]"
}

part "device"
{ nvidia-smi -L 2>/dev/null || true
  python3 -c "import torch, facegan_kit; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
  torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu', 'facegan_kit', facegan_kit.__version__)"
} 2>&1 | tee -a "$LOG"

want() { case " $PARTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

if want tests && [ "$DEVICE" = cuda ]; then
    part "CUDA tests"
    limit 150 python3 -m pytest -q -s -p no:cacheprovider -m gpu tests/train/test_cuda.py tests/train/test_graphs.py
elif want tests; then
    part "CPU tests of the capture-ready step (the CUDA ones need a GPU)"
    limit 150 python3 -m pytest -q -p no:cacheprovider -m "not gpu" tests/train/test_graphs.py
fi

if want bench; then
    part "train_step.py: eager fp32 vs optimised vs CUDA graphs"
    # shellcheck disable=SC2086  # BATCHES and BENCH_STAGES are lists
    limit 150 python3 benchmarks/train_step.py --recipe "$RECIPE" --device "$DEVICE" --batch $BATCHES \
        ${BENCH_STAGES:+--stages $BENCH_STAGES} --json "$OUT/train_step.json" --md "$OUT/train_step.md"
fi

if want profile; then
    part "step_profile.py: $LAST_STAGE device time by component"
    # shellcheck disable=SC2086
    limit 90 python3 benchmarks/step_profile.py --recipe "$RECIPE" --device "$DEVICE" --batch $BATCHES \
        --stage "$LAST_STAGE" --md "$OUT/train_step.md"
fi

if want bench; then
    part "decoder_speed.py: exprgan-decoder vs the official layer order"
    limit 60 bash -c 'set -o pipefail; python3 benchmarks/decoder_speed.py --recipe "$1" --device "$2" | tee "$3"' \
        _ "$RECIPE" "$DEVICE" "$OUT/decoder_speed.md"
fi

if want train; then
    part "the whole schedule: facegan train $RECIPE"
    rm -rf "$RUN"
    t=$TRAIN_LIMIT
    want quality && [ $((BUDGET - SECONDS - 60)) -lt "$t" ] && t=$((BUDGET - SECONDS - 60))  # leave quality a minute
    # shellcheck disable=SC2086  # TRAIN_SET is a list of options
    limit "$t" $FACEGAN train "$RECIPE" --out "$RUN" --device "$DEVICE" --quiet $TRAIN_SET
    cp "$RUN/run.json" "$OUT/" 2>/dev/null
    [ "$COPY_LOG" = 1 ] && cp "$RUN/log.jsonl" "$OUT/" 2>/dev/null
    last_png=$(ls "$RUN"/samples/stage-*.png 2>/dev/null | tail -1)
    [ -n "$last_png" ] && cp "$last_png" "$OUT/samples.png"
fi

# the final model, or the newest checkpoint of a run cut off by its time limit
CKPT=$RUN/final.safetensors
[ -f "$CKPT" ] || CKPT=$(ls -t "$RUN"/checkpoints/*.safetensors 2>/dev/null | head -1)
if want quality && [ -n "$CKPT" ] && [ -f "$CKPT" ]; then
    part "oracle quality of $CKPT"
    limit "$QUALITY_LIMIT" python3 - "$CKPT" "$OUT/quality.json" "$DEVICE" <<'EOF'
import json, sys
from facegan_kit.eval.suite import evaluate, load_editor
ckpt, dest, device = sys.argv[1:4]
editor = load_editor(ckpt, device=device)
keys = ["oracle_expression_accuracy", "oracle_identity_kept_rate", "oracle_recon_identity_kept_rate",
        "oracle_intensity_rho_continuous", "oracle_intensity_rho_levels", "oracle_neutral_rate", "recon_l1"]
out = {"checkpoint": ckpt}
for split in ("test", "train"):
    if hasattr(editor.controller, "level_codes"):
        editor.controller.level_codes = "single"  # the paper's levels first
    m = evaluate(editor, split=split, max_subjects=8, device=device, expression_judge=None, identity_judge=None)
    out[split] = {k: m.get(k) for k in keys}
    out[split]["per_class"] = m.get("oracle_expression_accuracy_per_class")
    if hasattr(editor.controller, "level_codes"):  # fctrl: the staircase levels too
        editor.controller.level_codes = "cumulative"
        m = evaluate(editor, split=split, max_subjects=8, device=device, expression_judge=None, identity_judge=None)
        out[split]["oracle_intensity_rho_levels_cumulative"] = m.get("oracle_intensity_rho_levels")
    print(split, json.dumps(out[split]))
open(dest, "w").write(json.dumps(out, indent=1))
EOF
fi

if [ "${COMPILE:-0}" = 1 ]; then
    part "train_step.py: $LAST_STAGE with torch.compile"
    # shellcheck disable=SC2086
    limit 150 python3 benchmarks/train_step.py --recipe "$RECIPE" --device "$DEVICE" --batch $BATCHES \
        --stages "$LAST_STAGE" --opt train.compile=true --json "$OUT/train_step_compile.json"
fi
if want real; then
    part "real faces: $RECIPE at $REAL_SIZE px on $REAL_DATA, split(s) $REAL_SPLITS, variants $REAL_VARIANTS"
    if [ ! -f "$REAL_DATA/index.csv" ]; then
        echo "-- skipped: $REAL_DATA/index.csv is missing (REAL=<prepared set> bash benchmarks/prepare_gpu_carry.sh)" | tee -a "$LOG"
        FAILED="$FAILED [$CURRENT: no data]"
    else
        options="--set model.z_dim=200 --set model.decoder.source_blend=true --set losses.keep.type=source-keep"
        for st in 1 2; do
            options="$options --set stages.$st.pairs=same-person --set stages.$st.losses.keep=$REAL_KEEP"
        done
        real_one() {  # variant split: train and judge one split of one variant (its own process)
            local extra=""
            [ "$1" = options ] && extra=$options
            # shellcheck disable=SC2086  # option lists
            OMP_NUM_THREADS=4 python3 benchmarks/real_faces.py --data "$REAL_DATA" --recipe "$RECIPE" \
                --out "$RUN-real-$1" --only "$2" --device "$DEVICE" --quiet --json "$OUT/real_$1_$2.json" \
                --set data.type=prepared --set data.size=$REAL_SIZE --set model.image_size=$REAL_SIZE $extra $REAL_SET \
                > "$RUN-real-$1-$2.log" 2>&1
            local rc=$?
            sed "s/^/[$1 $2] /" "$RUN-real-$1-$2.log"
            return $rc
        }
        export -f real_one
        export REAL_DATA REAL_SIZE RECIPE RUN DEVICE OUT REAL_SET options
        jobs_=""
        for v in $REAL_VARIANTS; do for sp in $REAL_SPLITS; do jobs_="$jobs_ $v:$sp"; done; done
        # shellcheck disable=SC2086
        limit "$REAL_LIMIT" bash -c 'pids=""; for j in "$@"; do real_one "${j%%:*}" "${j##*:}" & pids="$pids $!"; done
            rc=0; for p in $pids; do wait $p || rc=1; done; exit $rc' _ $jobs_
    fi
fi
if [ -z "$FAILED" ]; then
    part "done: every part passed"
else
    part "done: FAILED$FAILED"
    exit 1
fi
