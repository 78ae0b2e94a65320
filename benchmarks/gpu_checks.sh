#!/usr/bin/env bash
# Every GPU check of the project in one run, for a short-lived GPU machine (about 8 minutes on an
# H100; prepare what it needs with benchmarks/prepare_gpu_carry.sh, whose header has the command):
#   1. the CUDA tests (tests/train/test_cuda.py: auto speed options, CPU/GPU edit parity, fp32 resume);
#   2. benchmarks/train_step.py: images/s of each stage, optimised vs eager fp32, batch 48 and 256;
#   3. the recipe's whole three-stage schedule, end to end, timed (`facegan train`; about 5.5 min
#      for recipes/exprgan.toml on an H100);
#   4. oracle quality of that model on 8 test and 8 training subjects (what `facegan eval` reports);
#   5. with COMPILE=1: train_step.py for the last stage with torch.compile (no gain measured on an
#      H100 at batch 48, and minutes of compilation).
# Each part has its own time limit and the script goes on when one fails; everything lands in $OUT
# (log.txt, train_step.{json,md}, run.json, log.jsonl, samples.png, quality.json,
# train_step_compile.json) -- eight files at most, what a lent machine hands back.
#
#   OUT=runs/gpu bash benchmarks/gpu_checks.sh
#   PARTS="train quality" OUT=runs/gpu bash benchmarks/gpu_checks.sh   # only parts 3 and 4
#   # two variants of the recipe side by side on one GPU (each its own OUT and RUN):
#   PARTS="train quality" COPY_LOG=0 OUT=$OUT/a RUN=/tmp/a bash benchmarks/gpu_checks.sh &
#   PARTS="train quality" COPY_LOG=0 OUT=$OUT/b RUN=/tmp/b TRAIN_SET="--set data.include_neutral=true" \
#       bash benchmarks/gpu_checks.sh & wait
#   # plumbing check on a CPU, in about a minute:
#   OUT=/tmp/gc RECIPE=tests/fixtures/tiny.toml BATCHES=8 DEVICE=cpu bash benchmarks/gpu_checks.sh
set -u
OUT=${OUT:-runs/gpu-checks}
RECIPE=${RECIPE:-recipes/exprgan.toml}
BATCHES=${BATCHES:-48 256}
DEVICE=${DEVICE:-cuda}
RUN=${RUN:-/tmp/gpu-checks-run}
LAST_STAGE=${LAST_STAGE:-refining}
FACEGAN=${FACEGAN:-facegan}   # or "python3 -m facegan_kit"
PARTS=${PARTS:-tests bench train quality}   # which parts run (COMPILE=1 adds the compile one)
TRAIN_LIMIT=${TRAIN_LIMIT:-420}
QUALITY_LIMIT=${QUALITY_LIMIT:-150}
TRAIN_SET=${TRAIN_SET:-}        # extra "--set key=value ..." for the training run (a variant)
COPY_LOG=${COPY_LOG:-1}         # 0: leave log.jsonl behind (two variants must fit in 8 files)
mkdir -p "$OUT"
LOG=$OUT/log.txt
export PYTHONUNBUFFERED=1

part() { echo "== $1 ($(date -u +%T))" | tee -a "$LOG"; }
# limit SECONDS CMD...: run with a time limit, output to the log, note the exit status and the time.
limit() {
    local t=$1 t0=$SECONDS
    shift
    timeout "$t" "$@" 2>&1 | tee -a "$LOG"
    echo "-- rc=${PIPESTATUS[0]} in $((SECONDS - t0)) s" | tee -a "$LOG"
}

part "device"
{ nvidia-smi -L 2>/dev/null || true
  python3 -c "import torch, facegan_kit; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
  torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu', 'facegan_kit', facegan_kit.__version__)"
} 2>&1 | tee -a "$LOG"

want() { case " $PARTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

if want tests && [ "$DEVICE" = cuda ]; then
    part "CUDA tests"
    limit 120 python3 -m pytest -q -p no:cacheprovider tests/train/test_cuda.py
fi

if want bench; then
    part "train_step.py: optimised vs eager fp32"
    # shellcheck disable=SC2086  # BATCHES is a list
    limit 150 python3 benchmarks/train_step.py --recipe "$RECIPE" --device "$DEVICE" --batch $BATCHES \
        --json "$OUT/train_step.json" --md "$OUT/train_step.md"
fi

if want bench; then
    part "decoder_speed.py: exprgan-decoder vs the official layer order"
    limit 60 python3 benchmarks/decoder_speed.py --recipe "$RECIPE" --device "$DEVICE" | tee "$OUT/decoder_speed.md"
fi

if want train; then
    part "the whole schedule: facegan train $RECIPE"
    rm -rf "$RUN"
    # shellcheck disable=SC2086  # TRAIN_SET is a list of options
    limit "$TRAIN_LIMIT" $FACEGAN train "$RECIPE" --out "$RUN" --device "$DEVICE" --quiet $TRAIN_SET
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
part "done"
