// inputs.js - the CSV reader and the graph-input building shared by score.js and
// tests/bench/predict_ort.js.
//
// The CSV reader follows model/csv.c (RFC 4180): optional UTF-8 BOM; LF, CRLF or lone
// CR line ends; lines with no characters are skipped; quoted fields may hold ',', line
// ends and doubled quotes; a '"' inside an unquoted field, a NUL byte, a character after
// a closing quote or an unterminated quote is an error; ragged rows are an error.
//
// The graph inputs are those model/fv_onnx.h documents, built from fedvault's schema
// JSON: one [N,1] tensor per numeric column (float32, NaN for "" or "NA") and per
// categorical column (string, the cell as is), named after the column with every
// character outside [A-Za-z0-9_] replaced by '_' and a '_' prefix before a leading digit
// or an empty name.
//
// Errors are thrown as InputError, whose message names FILE:LINE; the caller prints it.
'use strict';

class InputError extends Error {}

function die(msg) {
  throw new InputError(msg);
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

// The data rows of a CSV text (records after the header), checked against the header.
function readTable(name, text) {
  const records = parseCsv(name, text);
  if (records.length < 2) die(`${name}: no rows`);
  const header = records[0].fields;
  const rows = records.slice(1);
  for (const r of rows)
    if (r.fields.length !== header.length)
      die(`${name}:${r.line}: ${r.fields.length} fields, the header has ${header.length}`);
  return { header, rows };
}

// The feeds for rows (records of readTable) as ort.Tensor objects, keyed by input name.
function buildFeeds(ort, schema, name, header, rows) {
  const nRows = rows.length;
  const feeds = {};
  for (const col of schema.columns) {
    if (col.type !== 'numeric' && col.type !== 'categorical') continue;
    const idx = header.indexOf(col.name);
    if (idx < 0) die(`${name}: no column '${col.name}'`);
    const input = inputName(col.name);
    if (col.type === 'numeric') {
      const v = new Float32Array(nRows);
      rows.forEach((r, i) => {
        const cell = r.fields[idx];
        if (cell === '' || cell === 'NA') { v[i] = NaN; return; }
        if (!NUMBER.test(cell)) die(`${name}:${r.line}: '${cell}' in numeric column '${col.name}'`);
        v[i] = Number(cell);
      });
      feeds[input] = new ort.Tensor('float32', v, [nRows, 1]);
    } else {
      feeds[input] = new ort.Tensor('string', rows.map((r) => r.fields[idx]), [nRows, 1]);
    }
  }
  return feeds;
}

// Every input of the session has a feed, or an InputError.
function checkFeeds(session, feeds) {
  for (const want of session.inputNames)
    if (!(want in feeds)) die(`model input '${want}' has no column in the schema`);
}

module.exports = { InputError, parseCsv, inputName, NUMBER, readTable, buildFeeds, checkFeeds };
