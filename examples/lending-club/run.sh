#!/usr/bin/env bash
# The main job: a federation of five regional banks trains one credit-risk model on the
# shipped Lending Club data, with secure aggregation, on this machine (loopback).
#   - installs the Debian packages it needs (when run as root) and builds fedvault
#     (release) into build-release/,
#   - holds out a stratified 25 % of the rows as a test split drawn from every region,
#   - splits the other 75 % into five banks by the borrower's state (split_regions.py),
#   - provisions the federation (a CA and one startup kit per bank and the coordinator),
#   - starts the coordinator with examples/lending-club/job.json and one agent per bank,
#     each agent reading only its own bank's file,
#   - prints the global validation metrics of every round (computed by the coordinator
#     from securely summed histograms) and scores the test split with the final model.
# Everything goes to out/lending-club/ (logs in out/lending-club/logs/).
# Extra arguments are passed to fedvault-coordinator (e.g. --max-uploads 5).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" = 0 ]; then .ci/install-deps; fi
if [ ! -d build-release ]; then
  meson setup build-release -Dbuildtype=release -Db_ndebug=true >/dev/null
fi
ninja -C build-release coordinator/fedvault coordinator/fedvault-coordinator \
  agent/fedvault-agent >/dev/null
bin=build-release
fv=$bin/coordinator/fedvault
out=out/lending-club
rm -rf "$out"
mkdir -p "$out/logs"
data=examples/data/lending_club.csv
banks="bank-west bank-central bank-northeast bank-southeast bank-midwest"

$fv split --data "$data" --target Class --positive bad --test-fraction 0.25 --seed 0 \
  --train-out "$out/train.csv" --test-out "$out/test.csv" >/dev/null
echo "regions: $(/usr/bin/python3 examples/lending-club/split_regions.py "$out/train.csv" "$out/banks")"
$fv provision --federation lending-club --coordinator 127.0.0.1:0 \
  --agents "$(echo $banks | tr ' ' ,)" --admins ops-1 --out "$out/fed" >/dev/null

$bin/coordinator/fedvault-coordinator --config "$out/fed/coordinator/coordinator.json" \
  --job examples/lending-club/job.json --out "$out/state" --listen 127.0.0.1:0 "$@" \
  > "$out/result.json" 2> "$out/logs/coordinator.log" &
coord=$!
pids=()
cleanup() { kill "$coord" "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
port=
for _ in $(seq 1 100); do
  port=$(grep -o '"event":"listening"[^}]*' "$out/logs/coordinator.log" 2>/dev/null |
         grep -o '"port":[0-9]*' | cut -d: -f2 || true)
  [ -n "$port" ] && break
  if ! kill -0 "$coord" 2>/dev/null; then cat "$out/logs/coordinator.log"; exit 1; fi
  sleep 0.1
done
[ -n "$port" ] || { echo "the coordinator did not start"; exit 1; }
echo "coordinator listening on 127.0.0.1:$port"
for b in $banks; do
  $bin/agent/fedvault-agent --config "$out/fed/$b/agent.json" --data "$out/banks/$b.csv" \
    --coordinator "127.0.0.1:$port" --once 2> "$out/logs/$b.log" &
  pids+=($!)
done
status=0
wait "$coord" || status=$?
for p in "${pids[@]}"; do wait "$p" || status=$?; done
trap - EXIT
if [ "$status" != 0 ]; then
  echo "the federation failed (exit $status); last coordinator log lines:"
  tail -20 "$out/logs/coordinator.log"
  exit 1
fi
/usr/bin/python3 - "$out/state/rounds.jsonl" "$out/result.json" <<'PY'
import json, sys
print("round  agents  val ROC AUC  val PR AUC  val log loss  secs")
for line in open(sys.argv[1]):
    r = json.loads(line)
    mark = " *" if r["improved"] else ""
    print(f"{r['round']:5d}  {r['agents']:6d}  {r['val_roc_auc']:11.4f}  {r['val_pr_auc']:10.4f}"
          f"  {r['val_log_loss']:12.4f}  {r['secs']:5.2f}{mark}")
res = json.load(open(sys.argv[2]))
print(f"best round {res['best_round']} (* = improved); {res['rounds']} rounds completed "
      f"(with the statistics round), {res['rounds_failed']} aborted")
PY
echo "final model: $out/state/final.fvm; on the held-out test split:"
$fv eval --model "$out/state/final.fvm" --data "$out/test.csv"
