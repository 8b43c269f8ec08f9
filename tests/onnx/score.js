#!/usr/bin/env node
// score.js - scores a CSV file with a fedvault model exported to ONNX, in ONNX Runtime.
//
// usage: node score.js MODEL.onnx SCHEMA.json DATA.csv OUT.txt
//
// Builds the graph inputs exactly as model/fv_onnx.h documents them, from the schema
// (fedvault's schema JSON; the same text is in the model's "fedvault.schema" metadata)
// and the CSV, with inputs.js (which also holds the CSV reader, following model/csv.c).
// Writes one line per row to OUT: the probability of the positive class for a binary
// model, the K class probabilities separated by ',' otherwise, each with 9 significant
// digits (enough to round-trip a float32).
'use strict';

const fs = require('fs');
const ort = require('onnxruntime-node');
const { InputError, readTable, buildFeeds, checkFeeds } = require('./inputs');

function die(msg) {
  process.stderr.write(`score.js: error: ${msg}\n`);
  process.exit(1);
}

async function main() {
  const [modelPath, schemaPath, dataPath, outPath] = process.argv.slice(2);
  if (!outPath) die('usage: node score.js MODEL.onnx SCHEMA.json DATA.csv OUT.txt');
  const schema = JSON.parse(fs.readFileSync(schemaPath, 'utf8'));
  const { header, rows } = readTable(dataPath, fs.readFileSync(dataPath, 'utf8'));
  const nRows = rows.length;
  const feeds = buildFeeds(ort, schema, dataPath, header, rows);
  const session = await ort.InferenceSession.create(modelPath);
  checkFeeds(session, feeds);
  const out = await session.run(feeds, ['probability']);
  const p = out.probability;
  const k = p.dims[1];
  if (p.dims[0] !== nRows) die(`probability has ${p.dims[0]} rows, expected ${nRows}`);
  const lines = [];
  for (let i = 0; i < nRows; i++) {
    const vals = [];
    for (let j = 0; j < k; j++) vals.push(p.data[i * k + j].toPrecision(9));
    lines.push(vals.join(','));
  }
  fs.writeFileSync(outPath, lines.join('\n') + '\n');
}

main().catch((e) => die(e instanceof InputError ? e.message : e && e.stack ? e.stack : String(e)));
