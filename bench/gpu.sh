#!/usr/bin/env bash
# The checks only a CUDA machine can make, in one go, within a deadline: `pytest -m gpu`, then bench/multiturn.py
# on the published 7B and 3B Qwen2.5-Omni shapes in nf4 and bf16. Logs and JSON go to $OUT (default ./gpu-out).
# Where espeak-ng is missing, SPEECH_WAV names a speech recording made elsewhere (tests/conftest.py).
# On a bare CUDA image with torch, the rest of requirements.txt must be there too: the lent H200's image (2026-11) lacked
# bitsandbytes, av, sqlalchemy, alembic, mako and pydantic and had transformers 5.17; wheels carried in and installed
# with `pip install --no-deps --target DIR` (bitsandbytes' wheel trimmed to its CUDA 13 library to fit) did the job.
# Run: bash bench/gpu.sh [SECONDS]
set -u
deadline=$((SECONDS + ${1:-560}))
out=${OUT:-gpu-out}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

step() {  # step NAME SECONDS COMMAND...: runs COMMAND with at most SECONDS (less if the deadline is nearer)
    local name=$1 limit=$2
    shift 2
    local left=$((deadline - SECONDS - 5))
    ((left < limit)) && limit=$left
    if ((limit < 20)); then echo "== $name: skipped, deadline"; return; fi
    echo "== $name (at most ${limit}s)"
    local start=$SECONDS
    timeout "$limit" "$@" > "$out/$name.log" 2>&1
    echo "== $name: exit $? after $((SECONDS - start))s"
    grep -v -e '^\[transformers\]' -e 'shards' -e 'Warning' -e '^  init' "$out/$name.log" | tail -n 40
    { echo "== $name"; cat "$out/$name.log"; } >> "$out/all.log" && rm "$out/$name.log"  # few files come back
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$py -c "import torch, transformers, bitsandbytes; print('torch', torch.__version__, 'transformers', transformers.__version__, 'bitsandbytes', bitsandbytes.__version__)"
step pytest-gpu 120 $py -m pytest -m gpu -p no:cacheprovider -q -s tests/test_engine.py tests/test_gpu.py
# Where the app's decode speed goes (2026-11 on an H200: 44 t/s from plain generate on the main thread, 16 from any
# other thread). Three rounds: a slow main thread in rounds 2 and 3 would mean state, not the thread.
step decode-overhead-3b 150 $py bench/decode_overhead.py --size 3b --rounds 3 --work /tmp/multiturn
# The 7B nf4 run also builds and writes the 7B checkpoint (about 18 GB), hence its longer limit; a second call on the
# same warm machine finds the checkpoint built.
for run in 7b:4bit:300 7b:none:150 3b:4bit:120 3b:none:90; do
    IFS=: read -r size quant limit <<< "$run"
    step "multiturn-$size-$quant" "$limit" $py bench/multiturn.py --size "$size" --quant "$quant" --repeats 1 \
        --work /tmp/multiturn --json "$out/multiturn-$size-$quant.json"
done
