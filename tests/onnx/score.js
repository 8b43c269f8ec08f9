#!/usr/bin/env node
// score.js - scores a CSV file with a fedvault model exported to ONNX, in ONNX Runtime.
//
// usage: node score.js MODEL.onnx SCHEMA.json DATA.csv OUT.txt
//
// Builds the graph inputs exactly as model/fv_onnx.h documents them, from the schema
// (fedvault's schema JSON; the same text is in the model's "fedvault.schema" metadata)
// and the CSV: one [N,1] tensor per numeric column (float32, NaN for "" or "NA") and per
// categorical column (string, the cell as is), named after the column with every
// character outside [A-Za-z0-9_] replaced by '_' and a '_' prefix before a leading digit
// or an empty name. Writes one line per row to OUT: the probability of the positive
// class for a binary model, the K class probabilities separated by ',' otherwise, each
// with 9 significant digits (enough to round-trip a float32).
//
// The CSV reader follows model/csv.c (RFC 4180): optional UTF-8 BOM; LF, CRLF or lone
// CR line ends; lines with no characters are skipped; quoted fields may hold ',', line
// ends and doubled quotes; a '"' inside an unquoted field, a NUL byte, a character after
// a closing quote or an unterminated quote is an error; ragged rows are an error.
'use strict';

const fs = require('fs');
const ort = require('onnxruntime-node');

function die(msg) {
  process.stderr.write(`score.js: error: ${msg}\n`);
  process.exit(1);
}

function parseCsv(name, text) {
  const records = [];
  let i = 0;
  let line = 1;
  const n = text.length;
  if (text.charCodeAt(0) === 0xfeff) i = 1; // BOM, decoded from EF BB BF
  while (i < n) {
    // a line with no characters at all is not a record
    if (text[i] === '\n') { i++; line++; continue; }
    if (text[i] === '\r') { i += text[i + 1] === '\n' ? 2 : 1; line++; continue; }
    const rec = [];
    const recLine = line;
    for (;;) {
      let field = '';
      if (text[i] === '"') {
        i++;
        for (;;) {
          if (i >= n) die(`${name}:${recLine}: unterminated quoted field`);
          const c = text[i];
          if (c === '"') {
            if (text[i + 1] === '"') { field += '"'; i += 2; continue; }
            i++;
            break;
          }
          if (c === '\0') die(`${name}:${line}: NUL byte`);
          if (c === '\n') line++;
          else if (c === '\r' && text[i + 1] !== '\n') line++;
          field += c;
          i++;
        }
        if (i < n && text[i] !== ',' && text[i] !== '\n' && text[i] !== '\r')
          die(`${name}:${line}: character after a closing quote`);
      } else {
        const start = i;
        while (i < n && text[i] !== ',' && text[i] !== '\n' && text[i] !== '\r') {
          if (text[i] === '"') die(`${name}:${line}: '"' in an unquoted field`);
          if (text[i] === '\0') die(`${name}:${line}: NUL byte`);
          i++;
        }
        field = text.slice(start, i);
      }
      rec.push(field);
      if (i < n && text[i] === ',') { i++; continue; }
      break; // line end or end of input
    }
    if (i < n) { // consume the line end
      i += text[i] === '\r' && text[i + 1] === '\n' ? 2 : 1;
      line++;
    }
    records.push({ line: recLine, fields: rec });
  }
  return records;
}

function inputName(col) {
  let s = col.replace(/[^A-Za-z0-9_]/g, '_');
  if (s === '' || /^[0-9]/.test(s)) s = '_' + s;
  return s;
}

// fedvault's number grammar (model/text.c): [+-]?(digits[.digits*]|.digits)([eE][+-]?digits)?
const NUMBER = /^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$/;

async function main() {
  const [modelPath, schemaPath, dataPath, outPath] = process.argv.slice(2);
  if (!outPath) die('usage: node score.js MODEL.onnx SCHEMA.json DATA.csv OUT.txt');
  const schema = JSON.parse(fs.readFileSync(schemaPath, 'utf8'));
  const records = parseCsv(dataPath, fs.readFileSync(dataPath, 'utf8'));
  if (records.length < 2) die(`${dataPath}: no rows`);
  const header = records[0].fields;
  const rows = records.slice(1);
  const nRows = rows.length;
  for (const r of rows)
    if (r.fields.length !== header.length)
      die(`${dataPath}:${r.line}: ${r.fields.length} fields, the header has ${header.length}`);

  const feeds = {};
  for (const col of schema.columns) {
    if (col.type !== 'numeric' && col.type !== 'categorical') continue;
    const idx = header.indexOf(col.name);
    if (idx < 0) die(`${dataPath}: no column '${col.name}'`);
    const name = inputName(col.name);
    if (col.type === 'numeric') {
      const v = new Float32Array(nRows);
      rows.forEach((r, i) => {
        const cell = r.fields[idx];
        if (cell === '' || cell === 'NA') { v[i] = NaN; return; }
        if (!NUMBER.test(cell)) die(`${dataPath}:${r.line}: '${cell}' in numeric column '${col.name}'`);
        v[i] = Number(cell);
      });
      feeds[name] = new ort.Tensor('float32', v, [nRows, 1]);
    } else {
      feeds[name] = new ort.Tensor('string', rows.map((r) => r.fields[idx]), [nRows, 1]);
    }
  }
  const session = await ort.InferenceSession.create(modelPath);
  for (const want of session.inputNames)
    if (!(want in feeds)) die(`model input '${want}' has no column in the schema`);
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

main().catch((e) => die(e && e.stack ? e.stack : String(e)));
