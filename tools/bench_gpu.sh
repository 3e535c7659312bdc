#!/usr/bin/env bash
# The GPU benchmarks in one go, merged into one JSON (about 2 minutes on an H200; each step capped, 9.5 minutes in all):
#   bench-drr on CUDA (our PyTorch renderer vs nanodrr and DiffDRR on the GPU), bench-backbone with bf16 autocast and
#   in float32 (SDPA vs the official attention), bench-pretrain (one UniMiSS+ step, bf16 autocast), bench-infer
#   (whole-CT segmentation of the sample CT, the bundle's paths vs SwinUNETR).
#
#   bash tools/bench_gpu.sh [OUT]              OUT defaults to outputs/bench_gpu.json; each part also stays in
#                                              OUT's folder under bench_gpu_parts/ with its log
#   bash tools/bench_gpu.sh --steps S,.. [OUT] run only these steps (drr, backbone_bf16, backbone_fp32, pretrain,
#                                              infer), keep the other steps' parts and merge all: a lease too short
#                                              for every step, or a step to run again
#   bash tools/bench_gpu.sh --merge PARTS OUT  only merge the parts already in PARTS into OUT
#
# Without CUDA it exits 2 with one line saying so. Each step runs under its own time limit (together 9.5 minutes); a
# step that fails or runs out of time is recorded in the merged file with the end of its log, and the other steps
# still run; the script then exits 1 once the merged file is written (so does --merge when a part failed). Environment: PYTHON (default .venv/bin/python, else python3), BENCH_GPU_DEVICE (default cuda).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
DEVICE="${BENCH_GPU_DEVICE:-cuda}"

merge() {  # merge PARTS OUT: steps.tsv (name, exit status, seconds, command) and <name>.json / <name>.log per step
    "$PY" - "$1" "$2" <<'EOF'
import json, os, sys
from pathlib import Path

parts, out = Path(sys.argv[1]), Path(sys.argv[2])
if not (parts / "steps.tsv").is_file():
    sys.exit(f"tools/bench_gpu.sh: {parts / 'steps.tsv'} does not exist; run the benchmarks first (without --merge)")
steps = {}
for line in (parts / "steps.tsv").read_text().splitlines():
    name, status, seconds, command = line.split("\t", 3)
    entry = {"command": command, "exit_status": int(status), "wall_s": float(seconds)}
    result, log = parts / f"{name}.json", parts / f"{name}.log"
    if int(status) == 0 and result.is_file():
        entry["result"] = json.loads(result.read_text())
    else:
        reason = "ran out of time" if int(status) in (124, 137) else "failed" if int(status) else "wrote no result"
        tail = log.read_text(errors="replace").strip().splitlines()[-5:] if log.is_file() else []
        entry["error"] = f"{reason} (exit status {status})" + ("; log ends: " + " | ".join(tail) if tail else "")
    steps[name] = entry
machine = json.loads((parts / "machine.json").read_text()) if (parts / "machine.json").is_file() else {}
merged = {"benchmark": "tools/bench_gpu.sh", "machine": machine, "steps": steps,
          "ok": sorted(n for n, s in steps.items() if "result" in s),
          "failed": sorted(n for n, s in steps.items() if "result" not in s)}
out.parent.mkdir(parents=True, exist_ok=True)
tmp = out.with_name(out.name + ".tmp")
tmp.write_text(json.dumps(merged, indent=2))
os.replace(tmp, out)
print(f"[bench-gpu] {out}: {len(merged['ok'])} step(s) with results, {len(merged['failed'])} without"
      + (f" ({', '.join(merged['failed'])})" if merged["failed"] else ""))
sys.exit(1 if merged["failed"] else 0)  # the merged file keeps what worked; the run still failed
EOF
}

if [ "${1:-}" = "--merge" ]; then
    [ $# -eq 3 ] || { echo "tools/bench_gpu.sh: --merge takes PARTS OUT" >&2; exit 2; }
    merge "$2" "$3"
    exit 0
fi
ALL_STEPS="drr backbone_bf16 backbone_fp32 pretrain infer"
STEPS="$ALL_STEPS"
case "${1:-}" in
    -h|--help) sed -n '2,16s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
    --steps)
        [ $# -ge 2 ] || { echo "tools/bench_gpu.sh: --steps takes a comma-separated list of $ALL_STEPS" >&2; exit 2; }
        STEPS="${2//,/ }"
        for s in $STEPS; do
            case " $ALL_STEPS " in *" $s "*) ;; *) echo "tools/bench_gpu.sh: unknown step $s (choose from $ALL_STEPS)" >&2; exit 2 ;; esac
        done
        shift 2 ;;
esac
case "${1:-}" in
    -*) echo "tools/bench_gpu.sh: unknown option $1 (use OUT, --steps S,.. [OUT], --merge PARTS OUT or --help)" >&2; exit 2 ;;
esac
OUT="${1:-outputs/bench_gpu.json}"
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "tools/bench_gpu.sh: no CUDA device available to torch ($("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo 'torch not importable') with $PY); run it on a machine with a GPU" >&2
    exit 2
fi
PARTS="$(dirname "$OUT")/bench_gpu_parts"
mkdir -p "$PARTS"
# the steps run now start afresh; with --steps the records of the others stay, so the merge holds them all
if [ "$STEPS" = "$ALL_STEPS" ] || [ ! -f "$PARTS/steps.tsv" ]; then
    : > "$PARTS/steps.tsv"
else
    awk -F'\t' -v run=" $STEPS " 'index(run, " " $1 " ") == 0' "$PARTS/steps.tsv" > "$PARTS/steps.tsv.tmp"
    mv "$PARTS/steps.tsv.tmp" "$PARTS/steps.tsv"
fi
"$PY" - "$PARTS/machine.json" "$DEVICE" <<'EOF'
import json, os, platform, sys, torch
dev = sys.argv[2]
info = {"gpu": torch.cuda.get_device_name(dev), "gpu_memory_gib": round(torch.cuda.get_device_properties(dev).total_memory / 2**30, 1),
        "torch": torch.__version__, "cuda": torch.version.cuda, "cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
        "load_average_start": list(os.getloadavg())}
open(sys.argv[1], "w").write(json.dumps(info, indent=2))
EOF

step() {  # step NAME LIMIT_S COMMAND...: run under the time limit, log to PARTS/NAME.log, record the status
    local name="$1" limit="$2" start status
    shift 2
    case " $STEPS " in *" $name "*) ;; *) return 0 ;; esac
    # a result left from an earlier run must not stand for this one (bench-backbone draws a chart beside its JSON)
    rm -f "$PARTS/$name.json" "$PARTS/$name.png"
    echo "[bench-gpu] $name: $*"
    start=$SECONDS
    set +e
    timeout --kill-after=10 "$limit" "$@" > "$PARTS/$name.log" 2>&1
    status=$?
    set -e
    local command="$*"
    # one line per step: a multi-line command (python -c) is recorded with its newlines as "; "
    printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - start))" "${command//$'\n'/; }" >> "$PARTS/steps.tsv"
    [ "$status" -eq 0 ] || echo "[bench-gpu] $name: exit status $status (see $PARTS/$name.log)"
}

step drr 120 "$PY" -m unimiss_monai bench-drr --device "$DEVICE" --sizes 256,512 --repeats 7 --competitor_repeats 3 \
    --slow_repeats 1 --competitors diffdrr-siddon,diffdrr-trilinear,nanodrr --out "$PARTS/drr.json"
step backbone_bf16 120 "$PY" -m unimiss_monai bench-backbone --device "$DEVICE" --amp bf16 --repeats 10 --warmup 3 \
    --out "$PARTS/backbone_bf16.json"
step backbone_fp32 120 "$PY" -m unimiss_monai bench-backbone --device "$DEVICE" --amp none --repeats 10 --warmup 3 \
    --out "$PARTS/backbone_fp32.json"
step pretrain 90 "$PY" -c "import sys
from unimiss_monai.benchmarks.pretrain import bench_pretrain
from unimiss_monai.data.writers import save_json
save_json(bench_pretrain(device=sys.argv[2], amp=True, steps=10, warmup=2), sys.argv[1])" "$PARTS/pretrain.json" "$DEVICE"
step infer 120 "$PY" -m unimiss_monai bench-infer --device "$DEVICE" --repeats 3 --out "$PARTS/infer.json"
merge "$PARTS" "$OUT"
