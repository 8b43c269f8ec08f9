#!/usr/bin/env bash
# The main job: a federation of five regional banks trains one credit-risk model on the
# shipped Lending Club data, with secure aggregation, on this machine (loopback).
#   - installs the Debian packages it needs (when run as root) and builds fedvault
#     (release) into build-release/,
#   - holds out a stratified 25 % of the rows as a test split drawn from every region,
#   - splits the other 75 % into five banks by the borrower's state (split_regions.py),
#   - provisions the federation (a CA and one startup kit per bank and the coordinator),
#   - starts the coordinator daemon and one agent per bank, submits
#     examples/lending-club/job.json through the admin CLI and follows it (job watch),
#     each agent reading only its own bank's file,
#   - the job trains the teacher (mlp:128,64), then distills it into a small student
#     (mlp:4) in federated distill rounds, and quantizes the student to int8, then
#     explains the teacher in one explain round (mean |reason-code contribution| per
#     column over every bank's validation rows, summed securely),
#   - prints the global validation metrics of every round (computed by the coordinator
#     from securely summed histograms), exports the teacher and the distilled student
#     through the admin CLI and prints the student's compression report, stops the
#     coordinator, verifies its signed audit log and each bank's, scores the test split
#     with both models and writes the student's scores with reason codes,
#   - goes on to serve: the operator releases the student as stable and the teacher as
#     backup (signed manifests); each bank's agent fetches and installs them
#     (--fetch-releases) after its own checks; one bank's fedvault-serve loads them and
#     scores the test split over HTTP (score_http.py), which must give fedvault
#     predict's scores to 1e-6.
# Everything goes to out/lending-club/ (logs in out/lending-club/logs/).
# Extra arguments are passed to fedvault-coordinator (e.g. --max-uploads 5).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" = 0 ]; then .ci/install-deps; fi
if [ ! -d build-release ]; then
  meson setup build-release -Dbuildtype=release -Db_ndebug=true >/dev/null
fi
ninja -C build-release cli/fedvault coordinator/fedvault-coordinator \
  agent/fedvault-agent agent/serve/fedvault-serve >/dev/null
bin=build-release
fv=$bin/cli/fedvault
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

# The coordinator runs as a daemon: agents on one port, the operator's CLI on the admin
# port (mutual TLS, admin certificates only), Prometheus metrics on a third; its state
# (SQLite, model files, the signed audit log) in $out/state/state.
$bin/coordinator/fedvault-coordinator --config "$out/fed/coordinator/coordinator.json" \
  --out "$out/state" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  --metrics-listen 127.0.0.1:0 "$@" 2> "$out/logs/coordinator.log" &
coord=$!
pids=()
cleanup() { kill "$coord" "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
listening=
for _ in $(seq 1 100); do
  listening=$(grep '"event":"listening"' "$out/logs/coordinator.log" 2>/dev/null || true)
  [ -n "$listening" ] && break
  if ! kill -0 "$coord" 2>/dev/null; then cat "$out/logs/coordinator.log"; exit 1; fi
  sleep 0.1
done
[ -n "$listening" ] || { echo "the coordinator did not start"; exit 1; }
field() { echo "$listening" | grep -o "\"$1\":[0-9]*" | cut -d: -f2; }
port=$(field port)
admin=(--config "$out/fed/ops-1/admin.json" --admin "127.0.0.1:$(field admin_port)")
metrics="http://127.0.0.1:$(field metrics_port)/metrics"
echo "coordinator: agents on 127.0.0.1:$port, admin on ${admin[3]}, metrics at $metrics"
for b in $banks; do
  $bin/agent/fedvault-agent --config "$out/fed/$b/agent.json" --data "$out/banks/$b.csv" \
    --coordinator "127.0.0.1:$port" --once 2> "$out/logs/$b.log" &
  pids+=($!)
done
# The operator submits the job and follows it (progress lines in logs/watch.log).
job=$($fv job submit "${FV_JOB:-examples/lending-club/job.json}" "${admin[@]}" --json |
      /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
echo "job ${job:0:16} submitted by ops-1; following it with 'fedvault job watch'"
status=0
$fv job watch "$job" "${admin[@]}" > "$out/logs/watch.log" || status=$?
for p in "${pids[@]}"; do wait "$p" || status=$?; done
if [ "$status" != 0 ]; then
  echo "the federation failed (exit $status); last coordinator log lines:"
  tail -20 "$out/logs/coordinator.log"
  exit 1
fi
$fv job show "$job" "${admin[@]}" --json > "$out/job.json"
/usr/bin/python3 - "$out/state/latest/rounds.jsonl" "$out/job.json" <<'PY'
import json, sys
print("round  kind     agents  val ROC AUC  val PR AUC  val log loss  teacher ROC AUC  secs")
expl = None
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["kind"] == "explain":
        expl = r
        continue
    mark = " *" if r["improved"] else ""
    t = f"{r['teacher_roc_auc']:15.4f}" if "teacher_roc_auc" in r else " " * 15
    print(f"{r['round']:5d}  {r['kind']:7s}  {r['agents']:6d}  {r['val_roc_auc']:11.4f}  "
          f"{r['val_pr_auc']:10.4f}  {r['val_log_loss']:12.4f}  {t}  {r['secs']:5.2f}{mark}")
job = json.load(open(sys.argv[2]))
print(f"job {job['status']}: {job['rounds_done']} training and "
      f"{job.get('distill_rounds_done', 0)} distill rounds completed, {job['rounds_failed']} "
      f"aborted (* = improved); teacher: model version {job['final_version']}, distilled "
      f"student: model version {job['student_version']}")
if expl is None:
    sys.exit("no explanation round in rounds.jsonl")
x = expl["explanation"]
cols = sorted(x["columns"], key=lambda c: -c["mean_abs"])
print(f"explanation of the teacher (round {expl['round']}, {expl['agents']} banks, {x['rows']} "
      f"validation rows summed securely, {x['method']}): mean |contribution| to the logit")
for c in cols[:8]:
    print(f"  {c['name']:24s} {c['mean_abs']:.4f}")
PY
final=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["final_version"])' "$out/job.json")
student=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["student_version"])' "$out/job.json")
$fv model export "$final" --out "$out/final.fvm" "${admin[@]}"
$fv model export "$student" --out "$out/student.fvm" "${admin[@]}"
echo "the distilled student (model version $student) and its compression report:"
$fv model show "$student" "${admin[@]}" | sed -n '/^compression report/,/^lineage/p'
# Serving: the operator releases the student as stable and the teacher as its backup
# (signed manifests, audited); each bank's agent fetches them over its one connection
# out and installs them in its model directory only after checking the coordinator's
# signature against the federation CA and that its own signed receipts name each model.
$fv model release "$student" --label stable "${admin[@]}"
$fv model release "$final" --label backup "${admin[@]}"
for b in $banks; do
  mkdir -p "$out/serve/$b"
  $bin/agent/fedvault-agent --config "$out/fed/$b/agent.json" --coordinator "127.0.0.1:$port" \
    --model-dir "$out/serve/$b" --fetch-releases 2>> "$out/logs/$b.log"
done
echo "releases installed at every bank: $(ls "$out"/serve/*/*.release.json | wc -l) (2 per bank)"
echo "metrics: $(/usr/bin/python3 -c 'import sys, urllib.request
t = urllib.request.urlopen(sys.argv[1], timeout=10).read().decode()
print(", ".join(l for l in t.splitlines() if l.startswith(("fedvault_rounds_completed",
      "fedvault_agent_bytes"))))' "$metrics")"
kill -TERM "$coord"
wait "$coord" || { echo "the coordinator did not stop cleanly"; exit 1; }
trap - EXIT
echo "audit logs (signed hash chains; see README 'Checking an audit record with openssl'):"
$fv audit verify --log "$out/state/state/audit.log" --head "$out/state/state/audit.log.head" \
  --cert "$out/fed/coordinator/cert.pem"
for b in $banks; do
  $fv audit verify --log "$out/fed/$b/audit/agent-audit.log" \
    --head "$out/fed/$b/audit/agent-audit.log.head" --cert "$out/fed/$b/cert.pem"
done
echo "teacher: $out/final.fvm (exported by the operator); on the held-out test split:"
$fv eval --model "$out/final.fvm" --data "$out/test.csv"
echo "student: $out/student.fvm; on the held-out test split:"
$fv eval --model "$out/student.fvm" --data "$out/test.csv"
$fv predict --model "$out/student.fvm" --data "$out/test.csv" --explain 3 --format jsonl \
  --out "$out/test-scores.jsonl"
echo "scores with reason codes: $out/test-scores.jsonl; its first line:"
head -1 "$out/test-scores.jsonl"

# One bank's scoring server: fedvault-serve loads the releases its agent installed (each
# manifest verified against the CA and the CRL the agent wrote there, each file's hash
# checked) and scores the held-out test split over HTTP; the answers must be the student's
# scores from fedvault predict above, to 1e-6.
$bin/agent/serve/fedvault-serve --model-dir "$out/serve/bank-west" \
  --ca "$out/fed/bank-west/ca.pem" --listen 127.0.0.1:0 2> "$out/logs/serve.log" &
serve=$!
trap 'kill "$serve" 2>/dev/null || true' EXIT
sport=
for _ in $(seq 1 100); do
  sport=$(grep -o '"event":"listening".*"port":[0-9]*' "$out/logs/serve.log" 2>/dev/null |
        grep -o '"port":[0-9]*' | cut -d: -f2 | head -1 || true)
  [ -n "$sport" ] && python3 -c 'import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=5)' "http://127.0.0.1:$sport/readyz" 2>/dev/null && break
  sport=
  if ! kill -0 "$serve" 2>/dev/null; then cat "$out/logs/serve.log"; exit 1; fi
  sleep 0.1
done
[ -n "$sport" ] || { echo "fedvault-serve did not become ready"; tail "$out/logs/serve.log"; exit 1; }
echo "fedvault-serve at http://127.0.0.1:$sport (bank-west's releases):"
python3 -c 'import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "http://127.0.0.1:$sport/v1/models"
python3 examples/lending-club/score_http.py "http://127.0.0.1:$sport" \
  examples/lending-club/job.json "$out/test.csv" "$out/test-scores.jsonl" \
  --out "$out/test-scores-http.jsonl"
kill -TERM "$serve"
wait "$serve" || { echo "fedvault-serve did not stop cleanly"; exit 1; }
trap - EXIT
