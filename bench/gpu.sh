#!/usr/bin/env bash
# The checks only a CUDA machine can make, in one go, within a deadline (default 470 s: a lent GPU gives about 15
# minutes, start included): `pytest -m gpu`, then the decode benchmark (main thread, eager app, compiled app, the
# bandwidth limit) on the published 3B and 7B Qwen2.5-Omni shapes, the thread diagnosis, and bench/multiturn.py;
# the most wanted figures first, each step cut at its limit, the rest skipped at the deadline. Logs and JSON go to
# $OUT (default ./gpu-out). Where espeak-ng is missing, SPEECH_WAV names a speech recording made elsewhere.
# On a bare CUDA image with torch, the rest of requirements.txt must be there too: the lent H200's image (2026-11) lacked
# bitsandbytes, av, sqlalchemy, alembic, mako and pydantic and had transformers 5.17; wheels carried in and installed
# with `pip install --no-deps --target DIR` (bitsandbytes' wheel trimmed to its CUDA 13 library to fit) did the job.
# Random checkpoints are built on the GPU without per-module initialisation and kept in /tmp/multiturn, so a second
# call on the same warm machine skips building them.
# Run: bash bench/gpu.sh [SECONDS]
set -u
deadline=$((SECONDS + ${1:-470}))
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
step pytest-gpu 150 $py -m pytest -m gpu -p no:cacheprovider -q -s tests/test_engine.py tests/test_gpu.py
# Decode speed: plain generate on the main thread, the app eager and compiled, and the bandwidth limit.
step decode-3b-none 150 $py bench/decode.py --size 3b --quant none --compile --repeats 2 --work /tmp/multiturn \
    --json "$out/decode-3b-none.json"
step decode-7b-4bit 240 $py bench/decode.py --size 7b --quant 4bit --compile --repeats 2 --work /tmp/multiturn \
    --json "$out/decode-7b-4bit.json"
# Where the eager app's speed went (2026-11 on an H200: 44 t/s from plain generate on the main thread, 16 from any
# other thread); the row "worker, 1 CPU thread" is the fix the app now makes on CUDA.
step decode-overhead-3b 80 $py bench/decode_overhead.py --size 3b --rounds 1 --work /tmp/multiturn
for run in 7b:4bit:120 7b:none:100; do
    IFS=: read -r size quant limit <<< "$run"
    step "multiturn-$size-$quant" "$limit" $py bench/multiturn.py --size "$size" --quant "$quant" --repeats 1 \
        --work /tmp/multiturn --json "$out/multiturn-$size-$quant.json"
done
step decode-7b-none 120 $py bench/decode.py --size 7b --quant none --compile --repeats 2 --work /tmp/multiturn \
    --json "$out/decode-7b-none.json"
step decode-3b-4bit 100 $py bench/decode.py --size 3b --quant 4bit --compile --repeats 2 --work /tmp/multiturn \
    --json "$out/decode-3b-4bit.json"
