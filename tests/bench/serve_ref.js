#!/usr/bin/env node
// serve_ref.js - the reference scoring server of tests/bench/bench_serve.py: Node's http
// server with onnxruntime-node scoring a fedvault model's ONNX export, doing the work
// fedvault-serve does for POST /v1/score, on one thread.
//
// usage: node serve_ref.js MODEL.onnx SCHEMA.json PORT [VERSION] [SHA256]
// (onnxruntime-node from NODE_PATH, as predict_ort.js; bench_serve.py points NODE_PATH at
// the harness directory of tests/onnx.) Prints one line {"event":"listening","port":N}
// on stderr when it accepts connections (PORT 0: any).
//
// The request is fedvault-serve's (model/fv_score_json.h): {"rows":[{col: value, ...}]}
// or {"row":{...}}, optional "key" and "explain" (read, not used: no reason codes here).
// Each row is decoded against the schema like fv_score_json_bind does: a numeric column
// takes a finite JSON number or null (missing: NaN, which the graph imputes), a
// categorical column a string or null (""); an unknown column, a missing feature column
// or a wrong type is that row's error, the others are scored. The good rows are scored in
// one session.run (batch = the request's good rows). The answer is fedvault-serve's shape:
//   {"model":{"version":V,"label":"stable","sha256":S},"fallback":false,
//    "results":[{"row":0,"score":p,"logit":z}, {"row":1,"error":"column 'X': ..."}]}
// with p and z formatted like C's %.9g (Number.toPrecision(9), trailing zeros dropped);
// a multi-class model answers "class" as the index of the predicted class (the benchmark
// scores a binary model).
// Errors: 400 malformed JSON or shape, 404 unknown path, 405 wrong method, 413 body over
// 1 MiB, 415 not application/json, 422 every row bad. GET /healthz and /readyz: 200.
//
// Threads: intraOpNumThreads 1, interOpNumThreads 1, sequential execution. session.run is
// asynchronous in onnxruntime-node (it runs on libuv's thread pool): bench_serve.py sets
// UV_THREADPOOL_SIZE=1 and pins the process to one core with taskset, so scoring and
// HTTP share one core as fedvault-serve --threads 1 does.
'use strict';

const http = require('http');
const fs = require('fs');
const ort = require('onnxruntime-node');
const { inputName } = require(require('path').join(__dirname, '..', 'onnx', 'inputs'));

const MAX_BODY = 1 << 20;
const MAX_ROWS = 1024;

function die(msg) {
  process.stderr.write(`serve_ref.js: error: ${msg}\n`);
  process.exit(1);
}

// C's %.9g (the JSON number fedvault predict and fedvault-serve write), or null.
function g9(x) {
  if (!Number.isFinite(x)) return 'null';
  let s = x.toPrecision(9);
  if (s.includes('e')) {
    let [m, e] = s.split('e');
    if (m.includes('.')) m = m.replace(/0+$/, '').replace(/\.$/, '');
    const n = Number(e);
    return `${m}e${n < 0 ? '-' : '+'}${String(Math.abs(n)).padStart(2, '0')}`;
  }
  if (s.includes('.')) s = s.replace(/0+$/, '').replace(/\.$/, '');
  return s;
}

class HttpError extends Error {
  constructor(status, msg) {
    super(msg);
    this.status = status;
  }
}

async function main() {
  const [modelPath, schemaPath, portArg, version = '1', sha = ''] = process.argv.slice(2);
  if (portArg === undefined) die('usage: node serve_ref.js MODEL.onnx SCHEMA.json PORT [VERSION] [SHA256]');
  const schema = JSON.parse(fs.readFileSync(schemaPath, 'utf8'));
  const session = await ort.InferenceSession.create(modelPath, {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    executionMode: 'sequential',
  });
  const cols = new Map(); // name -> {type, input}
  for (const c of schema.columns) cols.set(c.name, { type: c.type, input: inputName(c.name) });
  const features = schema.columns.filter((c) => c.type === 'numeric' || c.type === 'categorical');
  for (const want of session.inputNames)
    if (!features.some((c) => inputName(c.name) === want)) die(`model input '${want}' has no schema column`);
  const modelInfo = { version, label: 'stable', sha256: sha };

  function rowError(i, err) {
    return `{"row":${i},"error":${JSON.stringify(`row ${i}: ${err}`)}}`;
  }

  function bindRow(row) {
    if (row === null || typeof row !== 'object' || Array.isArray(row)) return { err: 'not an object' };
    for (const k of Object.keys(row)) if (!cols.has(k)) return { err: `unknown column '${k}'` };
    const vals = [];
    for (const c of features) {
      const v = row[c.name];
      if (v === undefined) return { err: `missing column '${c.name}'` };
      if (c.type === 'numeric') {
        if (v === null) vals.push(NaN);
        else if (typeof v !== 'number') return { err: `column '${c.name}': expected a number, got a ${typeof v}` };
        else vals.push(v);
      } else {
        if (v === null) vals.push('');
        else if (typeof v !== 'string') return { err: `column '${c.name}': expected a string, got a ${typeof v}` };
        else vals.push(v);
      }
    }
    return { vals };
  }

  async function score(body) {
    let req;
    try {
      req = JSON.parse(body);
    } catch (e) {
      throw new HttpError(400, `malformed JSON: ${e.message}`);
    }
    if (req === null || typeof req !== 'object' || Array.isArray(req)) throw new HttpError(400, 'the body must be an object');
    for (const k of Object.keys(req))
      if (!['rows', 'row', 'key', 'explain'].includes(k)) throw new HttpError(400, `unknown member '${k}'`);
    let rows;
    if (('rows' in req) === ('row' in req)) throw new HttpError(400, "exactly one of 'rows' and 'row'");
    if ('row' in req) rows = [req.row];
    else {
      rows = req.rows;
      if (!Array.isArray(rows) || rows.length < 1 || rows.length > MAX_ROWS)
        throw new HttpError(400, `'rows' must be an array of 1..${MAX_ROWS} objects`);
    }
    const bound = rows.map(bindRow);
    const good = bound.filter((b) => b.vals);
    const results = [];
    if (good.length > 0) {
      const n = good.length;
      const feeds = {};
      features.forEach((c, j) => {
        const input = inputName(c.name);
        if (c.type === 'numeric') {
          const v = new Float32Array(n);
          good.forEach((b, i) => { v[i] = b.vals[j]; });
          feeds[input] = new ort.Tensor('float32', v, [n, 1]);
        } else {
          feeds[input] = new ort.Tensor('string', good.map((b) => b.vals[j]), [n, 1]);
        }
      });
      const out = await session.run(feeds);
      const prob = out.probability.data;
      const logit = out.logit.data;
      const width = out.probability.dims[1];
      let gi = 0;
      bound.forEach((b, i) => {
        if (!b.vals) { results.push(rowError(i, b.err)); return; }
        if (width === 1) results.push(`{"row":${i},"score":${g9(prob[gi])},"logit":${g9(logit[gi])}}`);
        else {
          let best = 0;
          for (let k = 1; k < width; k++) if (prob[gi * width + k] > prob[gi * width + best]) best = k;
          results.push(`{"row":${i},"class":${best},"score":${g9(prob[gi * width + best])}}`);
        }
        gi++;
      });
    } else {
      bound.forEach((b, i) => results.push(rowError(i, b.err)));
    }
    const text = `{"model":${JSON.stringify(modelInfo)},"fallback":false,"results":[${results.join(',')}]}`;
    return { status: good.length > 0 ? 200 : 422, text };
  }

  function reply(res, status, text) {
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  }

  const server = http.createServer((req, res) => {
    const url = req.url.split('?')[0];
    if (url === '/healthz' || url === '/readyz') {
      if (req.method !== 'GET') return reply(res, 405, '{"error":"method not allowed"}');
      return reply(res, 200, '{"status":"ok"}');
    }
    if (url !== '/v1/score') return reply(res, 404, '{"error":"unknown path"}');
    if (req.method !== 'POST') return reply(res, 405, '{"error":"method not allowed"}');
    if (!/^application\/json\b/.test(req.headers['content-type'] || ''))
      return reply(res, 415, '{"error":"Content-Type must be application/json"}');
    const chunks = [];
    let size = 0;
    let over = false;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY) over = true;
      else chunks.push(c);
    });
    req.on('end', () => {
      if (over) return reply(res, 413, '{"error":"body over 1048576 bytes"}');
      score(Buffer.concat(chunks).toString('utf8')).then(
        (r) => reply(res, r.status, r.text),
        (e) => reply(res, e instanceof HttpError ? e.status : 500, JSON.stringify({ error: e.message })));
    });
  });
  server.keepAliveTimeout = 60000;
  server.listen(Number(portArg), '127.0.0.1', () => {
    process.stderr.write(JSON.stringify({ event: 'listening', port: server.address().port }) + '\n');
  });
}

main().catch((e) => die(e && e.stack ? e.stack : String(e)));
