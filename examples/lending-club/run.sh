#!/usr/bin/env bash
# The main job. Today: local training on the shipped Lending Club data (the federation of
# five regional banks replaces this when the coordinator and agents land).
#   - installs the Debian packages it needs (when run as root),
#   - builds fedvault (release) into build-release/,
#   - infers the schema, trains an MLP (32-16 hidden units) (L2 0.01, early stopping with patience 3) on a
#     stratified 75 % of the rows and reports ROC AUC / PR AUC on the held-out 25 %,
#   - writes the model to out/lending-club.fvm and scores the held-out rows with it.
# Extra arguments are passed to `fedvault train` (e.g. --model logreg, --drop sub_grade,int_rate).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" = 0 ]; then .ci/install-deps; fi
if [ ! -d build-release ]; then
  meson setup build-release -Dbuildtype=release -Db_ndebug=true >/dev/null
fi
ninja -C build-release coordinator/fedvault >/dev/null
fv=build-release/coordinator/fedvault
data=examples/data/lending_club.csv
mkdir -p out
$fv schema infer --data "$data" --target Class --positive bad --out out/lending-club.schema.json
$fv train --data "$data" --schema out/lending-club.schema.json --model mlp:32,16 \
  --seed 0 --test-fraction 0.25 --out out/lending-club.fvm "$@"
$fv split --data "$data" --target Class --positive bad --test-fraction 0.25 --seed 0 \
  --train-out out/lending-club.train.csv --test-out out/lending-club.test.csv >/dev/null
$fv eval --model out/lending-club.fvm --data out/lending-club.test.csv
