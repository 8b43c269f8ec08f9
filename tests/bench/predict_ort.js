#!/usr/bin/env node
// predict_ort.js - scoring latency and throughput of an exported fedvault model in ONNX
// Runtime (onnxruntime-node), the counterpart of `fedvault bench predict`.
//
// usage: node predict_ort.js MODEL.onnx SCHEMA.json DATA.csv BATCH [SECONDS]
// (onnxruntime-node from NODE_PATH or a node_modules above this file; bench_predict.py
// points NODE_PATH at the harness directory of tests/onnx.)
//
// The graph inputs for one batch of BATCH rows (the first BATCH data rows of DATA, wrapping
// around when it holds fewer) are built once with tests/onnx/inputs.js -- the builder
// score.js uses, so they are exactly what the export test feeds -- and are not timed. Then
// `await session.run(feeds)` is called, after a few untimed warm-up calls, until SECONDS
// (default 2) of timed calls have passed, each call timed with process.hrtime.bigint().
// Prints one JSON object: median and p90 per-call latency, rows/s = BATCH x calls / time
// spent in the calls.
//
// Threads: intraOpNumThreads 1 and interOpNumThreads 1, sequential execution: the same
// budget as fedvault, which scores with one OpenBLAS thread. Graph optimizations are
// ORT's default for node (all). Unlike `fedvault bench predict`, every call sees the same
// rows (one batch of tensors, built once); for these sizes the rows fit in cache either way.
'use strict';

const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');
const { InputError, readTable, buildFeeds, checkFeeds } = require(
  path.join(__dirname, '..', 'onnx', 'inputs'));

const WARMUP = 5;
const MAX_CALLS = 100000000;

function die(msg) {
  process.stderr.write(`predict_ort.js: error: ${msg}\n`);
  process.exit(1);
}

async function main() {
  const [modelPath, schemaPath, dataPath, batchArg, secondsArg] = process.argv.slice(2);
  if (!batchArg) die('usage: node predict_ort.js MODEL.onnx SCHEMA.json DATA.csv BATCH [SECONDS]');
  const batch = Number(batchArg);
  const seconds = secondsArg === undefined ? 2 : Number(secondsArg);
  if (!Number.isInteger(batch) || batch < 1 || batch > (1 << 20)) die(`BATCH: '${batchArg}'`);
  if (!(seconds > 0)) die(`SECONDS: '${secondsArg}'`);
  const schema = JSON.parse(fs.readFileSync(schemaPath, 'utf8'));
  const { header, rows } = readTable(dataPath, fs.readFileSync(dataPath, 'utf8'));
  const picked = [];
  for (let i = 0; i < batch; i++) picked.push(rows[i % rows.length]);
  const feeds = buildFeeds(ort, schema, dataPath, header, picked);
  const session = await ort.InferenceSession.create(modelPath, {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    executionMode: 'sequential',
  });
  checkFeeds(session, feeds);

  for (let i = 0; i < WARMUP; i++) await session.run(feeds);
  const lat = []; // seconds per call
  let busyNs = 0n;
  const wall0 = process.hrtime.bigint();
  while (Number(busyNs) * 1e-9 < seconds && lat.length < MAX_CALLS) {
    const t0 = process.hrtime.bigint();
    const out = await session.run(feeds);
    const t1 = process.hrtime.bigint();
    if (lat.length === 0 && out.probability.dims[0] !== batch)
      die(`probability has ${out.probability.dims[0]} rows, expected ${batch}`);
    busyNs += t1 - t0;
    lat.push(Number(t1 - t0) * 1e-9);
  }
  const wallS = Number(process.hrtime.bigint() - wall0) * 1e-9;
  lat.sort((a, b) => a - b);
  const q = (p) => lat[Math.max(0, Math.min(lat.length - 1, Math.ceil(p * lat.length) - 1))];
  const busyS = Number(busyNs) * 1e-9;
  process.stdout.write(JSON.stringify({
    runtime: 'onnxruntime-node',
    ort_version: ort.env.versions ? ort.env.versions.common : undefined,
    model: modelPath,
    data_rows: rows.length,
    batch,
    intra_op_threads: 1,
    inter_op_threads: 1,
    calls: lat.length,
    median_s: q(0.5),
    p90_s: q(0.9),
    min_s: lat[0],
    mean_s: busyS / lat.length,
    busy_s: busyS,
    wall_s: wallS,
    rows_per_s: (batch * lat.length) / busyS,
  }, null, 2) + '\n');
}

main().catch((e) => die(e instanceof InputError ? e.message : e && e.stack ? e.stack : String(e)));
