"""docs/job.schema.json against the C parser (protocols/job.c) and the specs we ship.

argv: fedvault
Runs with Debian's /usr/bin/python3 and its python3-jsonschema (draft 2020-12). In order:
  1. the JSON Schema is a valid draft 2020-12 schema;
  2. every job spec the repository ships (any *.json under the source tree that is an
     object with "schema" and "model", the fuzz corpus's broken_* files aside, plus the
     specs the federation tests build with fvfed.job_spec) validates against it, and
     `fedvault job check` accepts it;
  3. the keys agree, generically: for every object of the spec (the root, optimizer,
     strategy per kind, secagg, deadlines_ms, early_stopping, validation, distill and its
     early_stopping, cohort, privacy, and the embedded schema and its columns) the keys the C
     parser accepts, read from its own "unknown key ...; expected only ..." refusal of a
     probe key, equal the keys the JSON Schema allows there: a key added to the parser
     without documenting it fails here, and so does a documented key the parser refuses;
  4. the canonical form (fv_job_to_json, via job check) of a spec with every optional
     section (the JSON Schema's own examples), once per strategy kind, writes exactly
     the keys the JSON Schema allows, and every "default" the JSON Schema states is the
     value the parser fills in;
  5. a list of invalid specs (out of range, wrong word, wrong type, rules across fields)
     is refused by both the parser and the JSON Schema, and a few valid variants are
     accepted by both;
  6. `fedvault job template` (its variants) | `fedvault job check -` with a schema.json
     in the working directory, binary and multi-class; the template validates against
     the JSON Schema; its commented-out keys still parse once uncommented; the values
     it states are the parser's defaults; --schema replaces the schema.
"""
import copy
import glob
import json
import os
import re
import subprocess
import sys

import jsonschema

import fvtest

fedvault = os.path.abspath(sys.argv[1])
SRC = fvtest.SRC
tmp = fvtest.tmpdir()
DOC = json.load(open(os.path.join(SRC, "docs", "job.schema.json")))
jsonschema.Draft202012Validator.check_schema(DOC)
V = jsonschema.Draft202012Validator(DOC)

BINARY = {"fedvault_schema": 1, "target": "y", "positive": "yes", "classes": ["no", "yes"],
          "unknown_category": "error",
          "columns": [{"name": "age", "type": "numeric"},
                      {"name": "city", "type": "categorical", "categories": ["a", "b", "c"]},
                      {"name": "id", "type": "ignored"}, {"name": "y", "type": "target"}]}
MULTI = {"fedvault_schema": 1, "target": "y", "positive": None, "classes": ["cat", "dog", "emu"],
         "unknown_category": "other",
         "columns": [{"name": "x", "type": "numeric"},
                     {"name": "c", "type": "categorical", "categories": ["p", "q"]},
                     {"name": "y", "type": "target"}]}
BASE = {"name": "probe", "schema": BINARY, "model": "logreg"}


def check(spec, cwd=None, text=None, extra=(), wrap=False):
    """fedvault job check on a spec (dict, or text): (exit code, stdout, stderr). Only the
    shipped specs and the template run under FV_TEST_WRAPPER (valgrind): the many probes
    and invalid specs exercise the parser, which unit/protocols/test_job* check under it."""
    if text is None:
        text = json.dumps(spec)
    p = subprocess.run((fvtest.WRAPPER if wrap else []) + [fedvault, "job", "check", "-", *extra],
                       input=text,
                       capture_output=True, text=True, cwd=cwd or tmp, timeout=600)
    return p.returncode, p.stdout, p.stderr


def canonical(spec, **kw):
    code, out, err = check(spec, **kw)
    fvtest.check(code == 0, f"job check refused a spec it should take:\n{err}\n{spec}")
    return json.loads(out)


def schema_errors(spec):
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
            for e in V.iter_errors(spec)]


# ---- the JSON Schema's key tree ----------------------------------------------------------

def resolve(s):
    while isinstance(s, dict) and "$ref" in s:
        ref = s["$ref"]
        assert ref.startswith("#/$defs/"), ref
        s = DOC["$defs"][ref[len("#/$defs/"):]]
    return s


def branches(s):
    """s and every subschema that applies to the same instance (allOf, anyOf, oneOf, if,
    then, else), $refs resolved."""
    s = resolve(s)
    if not isinstance(s, dict):
        return []
    out = [s]
    for k in ("allOf", "anyOf", "oneOf"):
        for sub in s.get(k, []):
            out += branches(sub)
    for k in ("then", "else"):
        if k in s:
            out += branches(s[k])
    return out


def props_of(s, only_kind=None):
    """{key: [subschemas]} the object schema s allows (only_kind: the oneOf branch of that
    strategy kind)."""
    res = {}
    for b in branches(s):
        if only_kind is not None:
            k = b.get("properties", {}).get("kind", {})
            if "const" in k and k["const"] != only_kind:
                continue
        for key, sub in b.get("properties", {}).items():
            res.setdefault(key, []).append(sub)
    return res


def schema_at(path):
    """The subschemas at a dotted path ('' = root; 'schema.columns[]' the columns)."""
    cur = [DOC]
    for part in [p for p in path.split(".") if p]:
        arr = part.endswith("[]")
        key = part[:-2] if arr else part
        nxt = []
        for s in cur:
            for sub in props_of(s).get(key, []):
                for b in branches(sub):
                    if arr and "items" in b:
                        nxt.append(b["items"])
                    elif not arr:
                        nxt.append(b)
        cur = nxt
    return cur


def schema_keys(path, kind=None):
    keys = set()
    for s in schema_at(path):
        keys |= set(props_of(s, kind))
    return keys


def schema_paths(s=DOC, prefix=""):
    """Every dotted key path the JSON Schema allows (strategy: the union of the kinds)."""
    out = set()
    for key, subs in props_of(s).items():
        p = prefix + key
        out.add(p)
        for sub in subs:
            for b in branches(sub):
                if b.get("type") == "object" or "properties" in b:
                    out |= schema_paths(b, p + ".")
                if "items" in b:
                    out |= schema_paths(b["items"], p + "[].")
    return out


def value_paths(v, prefix=""):
    out = set()
    if isinstance(v, dict):
        for k, x in v.items():
            out.add(prefix + k)
            out |= value_paths(x, prefix + k + ".")
    elif isinstance(v, list):
        for x in v:
            out |= value_paths(x, prefix[:-1] + "[].")
    return out


# ---- 2. every shipped spec ---------------------------------------------------------------

def shipped_specs():
    found = []
    for root, dirs, files in os.walk(SRC):
        dirs[:] = [d for d in dirs if not d.startswith((".", "build")) and d != "node_modules"]
        for f in files:
            if not f.endswith(".json") or f.startswith("broken_"):
                continue
            path = os.path.join(root, f)
            if os.path.getsize(path) > (64 << 20):
                continue
            try:
                v = json.load(open(path))
            except (ValueError, UnicodeDecodeError):
                continue
            if isinstance(v, dict) and "schema" in v and "model" in v:
                found.append((os.path.relpath(path, SRC), v))
    return found


specs = shipped_specs()
names = [n for n, _ in specs]
for must in ("examples/lending-club/job.json", "examples/lending-club/job-validated.json",
             "tests/fuzz/corpus/job/valid_minimal.json"):
    fvtest.check(must in names, f"{must} not found among the shipped specs: {names}")
import fvfed  # noqa: E402  (reads examples/lending-club/job.json)
specs += [("fvfed.job_spec()", fvfed.job_spec()),
          ("fvfed.job_spec(secagg='off')", fvfed.job_spec(secagg="off"))]
# bench_fed's spec ships without a schema: the benchmark inserts the main job's
bench_spec = json.load(open(os.path.join(SRC, "tests/bench/fed_job.json")))
fvtest.check("schema" not in bench_spec, "tests/bench/fed_job.json now has a schema: it is "
             "found above, drop this case")
bench_spec["schema"] = fvfed.job_spec()["schema"]
specs.append(("tests/bench/fed_job.json + the main job's schema", bench_spec))
for name, spec in specs:
    errs = schema_errors(spec)
    fvtest.check(not errs, f"{name} does not validate against docs/job.schema.json: {errs}")
    code, _, err = check(spec, cwd=os.path.dirname(os.path.join(SRC, name)) or SRC, wrap=True)
    fvtest.check(code == 0, f"{name}: job check refused a shipped spec: {err}")
print(f"shipped specs: {len(specs)} validate and pass job check")

# and the fuzz corpus's broken specs stay broken for the parser
broken = sorted(glob.glob(os.path.join(SRC, "tests/fuzz/corpus/job/broken_*.json")))
for path in broken:
    p = subprocess.run([fedvault, "job", "check", path], capture_output=True,
                       text=True, timeout=600)
    fvtest.check(p.returncode == 1, f"{path}: job check exit {p.returncode}: {p.stderr}")
print(f"fuzz corpus: {len(broken)} broken specs refused by job check")


# ---- 3. the keys each object accepts: the parser's own list vs the JSON Schema's ---------

def put_at(spec, path, value):
    """spec with the object at the dotted path set to value (parents made minimal)."""
    cur = spec
    parts = [p for p in path.split(".") if p]
    if not parts:
        spec.update(value)
        return spec
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part.endswith("[]"):
            key = part[:-2]
            cur[key] = copy.deepcopy(cur.get(key, []))
            if last:
                cur[key].insert(0, value)
                return spec
            cur = cur[key][0]
            continue
        if last:
            cur[part] = value
            return spec
        nxt = copy.deepcopy(cur.get(part)) if isinstance(cur.get(part), dict) else \
            copy.deepcopy(MINIMAL.get(".".join(parts[:i + 1]), {}))
        cur[part] = nxt
        cur = nxt
    return spec


# What an object needs before the parser reaches its key check.
MINIMAL = {"distill": {"student": "logreg"}}


def c_keys(path, obj):
    """The keys the parser accepts in the object at path, from its refusal of a probe."""
    spec = put_at(copy.deepcopy(BASE), path, dict(obj, zz_probe=1))
    code, _, err = check(spec)
    m = re.search(r"unknown key[^;]*; expected only (.*)$", err.strip().splitlines()[-1])
    if code != 1 or not m:
        return None, err
    text = re.sub(r"\([^)]*\)", "", m.group(1))
    return {w for w in re.split(r",| or | and ", text)
            if re.fullmatch(r"[a-z_][a-z0-9_]*", w.strip().strip("\"'"))
            for w in [w.strip().strip("\"'")]}, err


root_c, err = c_keys("", {})
fvtest.check(root_c is not None, f"no key list in the root's refusal: {err}")
objects = [("", None)]
for p in sorted(schema_paths()):
    if p.startswith("schema.") and p not in ("schema.columns",):
        continue
    subs = schema_at(p)
    if any(b.get("type") == "object" or "properties" in b for s in subs for b in branches(s)) \
            and p != "schema":
        objects.append((p, None))
objects += [("schema", None), ("schema.columns[]", None)]
failures = []
for path, _ in objects:
    kinds = [None]
    if path == "strategy":
        kinds = ["fedavg", "fedprox", "fedadam", "fedyogi"]
    for kind in kinds:
        if path == "schema":
            spec = dict(copy.deepcopy(BASE), schema=dict(BINARY, zz_probe=1))
            code, _, err = check(spec)
            m = re.search(r"expected only (.*)$", err.strip().splitlines()[-1])
            got = set(re.split(r",\s*", m.group(1))) if m else None
        elif path == "schema.columns[]":
            sch = copy.deepcopy(BINARY)
            sch["columns"][0]["zz_probe"] = 1
            code, _, err = check(dict(copy.deepcopy(BASE), schema=sch))
            m = re.search(r"expected only (.*)$", err.strip().splitlines()[-1])
            got = set(re.split(r",\s*", m.group(1))) if m else None
        else:
            obj = dict(MINIMAL.get(path, {}))
            if kind:
                obj["kind"] = kind
            got, err = c_keys(path, obj)
        fvtest.check(got is not None, f"{path or 'the root'}: no key list in: {err}")
        want = schema_keys(path, kind)
        for k in sorted(got - want):
            failures.append(f"{path or 'root'}{' (' + kind + ')' if kind else ''}: the parser "
                            f"accepts '{k}' but docs/job.schema.json does not document it")
        for k in sorted(want - got):
            failures.append(f"{path or 'root'}{' (' + kind + ')' if kind else ''}: "
                            f"docs/job.schema.json allows '{k}' but the parser refuses it")
fvtest.check(not failures, "key sets differ:\n  " + "\n  ".join(failures))
print(f"key sets agree on {len(objects)} objects"
)


# ---- 4. the canonical form of a full spec, and the documented defaults -------------------

def example(path):
    for s in schema_at(path):
        for b in branches(s):
            if "examples" in b:
                return copy.deepcopy(b["examples"][0])
    return None


full = copy.deepcopy(BASE)
for key in props_of(DOC):
    if key in full:
        continue
    full[key] = example(key)
full["distill"]["early_stopping"] = example("distill.early_stopping")
written = set()
for kind, strat in (("fedavg", {"kind": "fedavg"}), ("fedprox", {"kind": "fedprox", "mu": 0.01}),
                    ("fedadam", {"kind": "fedadam"}), ("fedyogi", {"kind": "fedyogi"})):
    spec = dict(copy.deepcopy(full), strategy=strat)
    errs = schema_errors(spec)
    fvtest.check(not errs, f"the full spec ({kind}) does not validate: {errs}")
    written |= value_paths(canonical(spec))
allowed = {p for p in schema_paths() if not p.startswith("schema.")} | \
    {"schema." + p for p in value_paths(BINARY)}
allowed_here = allowed
fvtest.check(written == allowed_here,
             f"canonical keys vs docs/job.schema.json: written, not documented: "
             f"{sorted(written - allowed_here)}; documented, not written: "
             f"{sorted(allowed_here - written)}")
print(f"the canonical form of the full spec writes the {len(written)} documented keys")


def check_defaults(canon, s=DOC, prefix=""):
    """Every "default" the JSON Schema states under s equals the parser's value in canon
    (an object default: its keys). Keys the canonical form leaves out (optional sections)
    are skipped. Returns how many defaults were compared."""
    n = 0
    for key, subs in props_of(s).items():
        if key == "schema" or key not in canon:
            continue
        for sub in subs:
            for b in branches(sub):
                if "default" in b:
                    d, c = b["default"], canon[key]
                    same = c == d or (isinstance(d, dict) and isinstance(c, dict) and
                                      all(c.get(k) == v for k, v in d.items()))
                    fvtest.check(same, f"{prefix}{key}: docs/job.schema.json's default {d!r}, "
                                       f"the parser's {c!r}")
                    n += 1
                if isinstance(canon[key], dict) and "properties" in b:
                    n += check_defaults(canon[key], b, prefix + key + ".")
    return n


minimal = canonical(BASE)
n = check_defaults(minimal)
# the distill section's own defaults (its early_stopping inherits the job's)
n += check_defaults(canonical(dict(BASE, distill={"student": "logreg"}))["distill"],
                    schema_at("distill")[0], "distill.")
fvtest.check(minimal["hist_bins"] == 1000 and minimal["early_stopping"]["metric"] == "roc_auc",
             f"binary defaults: {minimal}")
mc = canonical(dict(BASE, schema=MULTI))
fvtest.check(mc["hist_bins"] == 0 and mc["early_stopping"]["metric"] == "log_loss",
             f"multi-class defaults: {mc}")
print(f"{n} documented defaults equal the parser's")

# ---- 5. invalid specs: both refuse; valid variants: both take ----------------------------


def mut(**kw):
    s = copy.deepcopy(BASE)
    for k, v in kw.items():
        s[k] = v
    if isinstance(s.get("privacy"), dict):  # a None value there: the key left out
        s["privacy"] = {k: v for k, v in s["privacy"].items() if v is not None}
    return s


PRIV = {"mode": "local", "epsilon": 8.0, "delta": 1e-5, "outside_budget": ["stats", "metrics"]}
PDIST = dict(PRIV, mode="distributed", sample_rate=0.05)


INVALID = [
    ("rounds 0", mut(rounds=0)), ("rounds 10001", mut(rounds=10001)),
    ("rounds a string", mut(rounds="20")), ("rounds a real", mut(rounds=2.5)),
    ("local_epochs 0", mut(local_epochs=0)), ("local_epochs 1001", mut(local_epochs=1001)),
    ("batch_size 0", mut(batch_size=0)), ("batch_size 65537", mut(batch_size=65537)),
    ("optimizer.kind rmsprop", mut(optimizer={"kind": "rmsprop"})),
    ("optimizer.lr 0", mut(optimizer={"lr": 0})),
    ("optimizer.momentum 1", mut(optimizer={"momentum": 1})),
    ("optimizer.beta2 -0.1", mut(optimizer={"beta2": -0.1})),
    ("optimizer.eps 0", mut(optimizer={"eps": 0})),
    ("optimizer unknown key", mut(optimizer={"decay": 1})),
    ("l2 -1", mut(l2=-1)),
    ("strategy without kind", mut(strategy={})),
    ("strategy.kind fedsgd", mut(strategy={"kind": "fedsgd"})),
    ("fedprox without mu", mut(strategy={"kind": "fedprox"})),
    ("fedprox mu 0", mut(strategy={"kind": "fedprox", "mu": 0})),
    ("fedavg with mu", mut(strategy={"kind": "fedavg", "mu": 0.1})),
    ("fedadam with mu", mut(strategy={"kind": "fedadam", "mu": 0.1})),
    ("fedyogi beta1 1", mut(strategy={"kind": "fedyogi", "beta1": 1})),
    ("fedadam tau 0", mut(strategy={"kind": "fedadam", "tau": 0})),
    ("secagg on", mut(secagg="on")), ("secagg true", mut(secagg=True)),
    ("secagg.bits 0", mut(secagg={"bits": 0})), ("secagg.bits 32", mut(secagg={"bits": 32})),
    ("secagg.clip 0", mut(secagg={"clip": 0})),
    ("secagg.neighbors odd", mut(secagg={"neighbors": 3}, min_agents=9)),
    ("secagg.threshold 65536", mut(secagg={"threshold": 65536})),
    ("min_agents 2", mut(min_agents=2)), ("min_agents 65536", mut(min_agents=65536)),
    ("deadlines_ms.join 0", mut(deadlines_ms={"join": 0})),
    ("deadlines_ms.train 30 days + 1 ms", mut(deadlines_ms={"train": 2592000001})),
    ("deadlines_ms unknown key", mut(deadlines_ms={"stats": 1000})),
    ("early_stopping.metric f1", mut(early_stopping={"metric": "f1"})),
    ("early_stopping.patience 10001", mut(early_stopping={"patience": 10001})),
    ("early_stopping.min_delta -1", mut(early_stopping={"min_delta": -1})),
    ("accuracy on a binary schema", mut(early_stopping={"metric": "accuracy"})),
    ("roc_auc on a multi-class schema", mut(schema=MULTI, early_stopping={"metric": "roc_auc"})),
    ("validation_fraction 0", mut(validation_fraction=0)),
    ("validation_fraction 0.6", mut(validation_fraction=0.6)),
    ("hist_bins 5 (binary)", mut(hist_bins=5)), ("hist_bins 0 (binary)", mut(hist_bins=0)),
    ("hist_bins 100001", mut(hist_bins=100001)),
    ("hist_bins 1000 (multi-class)", mut(schema=MULTI, hist_bins=1000)),
    ("seed -1", mut(seed=-1)), ("seed 2^63", mut(seed=2 ** 63)),
    ("max_update_norm 0", mut(max_update_norm=0)),
    ("validation.max_failures 0", mut(validation={"max_failures": 0}, max_update_norm=5.0)),
    ("validation without max_update_norm", mut(validation={})),
    ("validation with secagg off", mut(validation={}, max_update_norm=5.0, secagg="off")),
    ("validation with neighbors", mut(validation={}, max_update_norm=5.0,
                                      secagg={"neighbors": 2}, min_agents=4)),
    ("distill without student", mut(distill={"rounds": 3})),
    ("distill.student tree", mut(distill={"student": "tree"})),
    ("distill.alpha 1.5", mut(distill={"student": "logreg", "alpha": 1.5})),
    ("distill.temperature 0", mut(distill={"student": "logreg", "temperature": 0})),
    ("distill.rounds 0", mut(distill={"student": "logreg", "rounds": 0})),
    ("distill.quantize_int8 a string", mut(distill={"student": "logreg", "quantize_int8": "yes"})),
    ("distill.early_stopping accuracy (binary)",
     mut(distill={"student": "logreg", "early_stopping": {"metric": "accuracy"}})),
    ("privacy without mode", mut(privacy=dict(PRIV, mode=None))),
    ("privacy.mode central", mut(privacy=dict(PRIV, mode="central"))),
    ("privacy without epsilon or noise_multiplier", mut(privacy=dict(PRIV, epsilon=None))),
    ("privacy epsilon 0 and noise_multiplier 0", mut(privacy=dict(PRIV, epsilon=0,
                                                                  noise_multiplier=0))),
    ("privacy with both epsilon and noise_multiplier",
     mut(privacy=dict(PRIV, noise_multiplier=1.1))),
    ("privacy.epsilon 101", mut(privacy=dict(PRIV, epsilon=101))),
    ("privacy.noise_multiplier -1", mut(privacy=dict(PRIV, epsilon=None, noise_multiplier=-1))),
    ("privacy without delta", mut(privacy=dict(PRIV, delta=None))),
    ("privacy.delta 0.2", mut(privacy=dict(PRIV, delta=0.2))),
    ("privacy.clip 0", mut(privacy=dict(PRIV, clip=0))),
    ("privacy.sample_rate 1.5", mut(privacy=dict(PRIV, sample_rate=1.5))),
    ("privacy.min_honest in local mode", mut(privacy=dict(PRIV, min_honest=2))),
    ("privacy unknown key", mut(privacy=dict(PRIV, seed=1))),
    ("privacy without outside_budget", mut(privacy=dict(PRIV, outside_budget=None))),
    ("privacy.outside_budget without metrics", mut(privacy=dict(PRIV, outside_budget=["stats"]))),
    ("privacy.outside_budget labels", mut(privacy=dict(PRIV, outside_budget=[
        "stats", "metrics", "labels"]))),
    ("privacy.outside_budget twice", mut(privacy=dict(PRIV, outside_budget=[
        "stats", "metrics", "stats"]))),
    ("privacy with explain, outside_budget without it", mut(explain=True, privacy=PRIV)),
    ("privacy distributed without sample_rate", mut(privacy=dict(PRIV, mode="distributed"))),
    ("privacy distributed with secagg off", mut(secagg="off", privacy=PDIST)),
    ("privacy distributed with local_epochs 2", mut(local_epochs=2, privacy=PDIST)),
    ("privacy distributed with distill", mut(distill={"student": "logreg"}, privacy=PDIST)),
    ("privacy distributed with validation", mut(validation={}, max_update_norm=5.0,
                                                privacy=PDIST)),
    ("name with a capital", mut(name="Bad")), ("name empty", mut(name="")),
    ("name of 65 characters", mut(name="a" * 65)),
    ("model tree", mut(model="tree")), ("model mlp:", mut(model="mlp:")),
    ("model with 9 hidden layers", mut(model="mlp:" + ",".join(["4"] * 9))),
    ("unknown key", mut(epochs=3)), ("no model", {"name": "x", "schema": BINARY}),
    ("schema empty string", mut(schema="")),
    ("schema.unknown_category drop", mut(schema=dict(BINARY, unknown_category="drop"))),
    ("schema without unknown_category",
     mut(schema={k: v for k, v in BINARY.items() if k != "unknown_category"})),
    ("schema.fedvault_schema 2", mut(schema=dict(BINARY, fedvault_schema=2))),
    ("schema two targets", mut(schema=dict(BINARY, columns=BINARY["columns"] + [
        {"name": "z", "type": "target"}]))),
    ("schema column type text", mut(schema=dict(BINARY, columns=[
        {"name": "age", "type": "text"}, {"name": "y", "type": "target"}]))),
    ("schema categories on a numeric column", mut(schema=dict(BINARY, columns=[
        {"name": "age", "type": "numeric", "categories": ["a"]}, {"name": "y", "type": "target"}]))),
    ("schema categorical without categories", mut(schema=dict(BINARY, columns=[
        {"name": "c", "type": "categorical"}, {"name": "y", "type": "target"}]))),
    ("schema category NA", mut(schema=dict(BINARY, columns=[
        {"name": "c", "type": "categorical", "categories": ["NA", "b"]},
        {"name": "y", "type": "target"}]))),
    ("schema one class", mut(schema=dict(BINARY, classes=["yes"]))),
    ("schema two classes, no positive", mut(schema=dict(BINARY, positive=None))),
]
for label, spec in INVALID:
    code, _, err = check(spec)
    fvtest.check(code == 1 and "error" in err,
                 f"invalid spec '{label}': job check exit {code}, expected 1: {err}")
    fvtest.check(schema_errors(spec), f"invalid spec '{label}': docs/job.schema.json takes it")
VALID = [
    ("minimal", BASE), ("multi-class", mut(schema=MULTI)),
    ("multi-class accuracy", mut(schema=MULTI, early_stopping={"metric": "accuracy"},
                                 hist_bins=0)),
    ("secagg off", mut(secagg="off")),
    ("neighbors 2 of 4", mut(secagg={"neighbors": 2, "threshold": 3}, min_agents=4)),
    ("fedprox", mut(strategy={"kind": "fedprox", "mu": 0.5})),
    ("fedyogi defaults", mut(strategy={"kind": "fedyogi"})),
    ("sgd", mut(optimizer={"kind": "sgd", "lr": 0.05})),
    ("validated", mut(validation={"max_failures": 2}, max_update_norm=2.5)),
    ("distill", mut(distill={"student": "mlp:4", "early_stopping": {"patience": 0}})),
    ("patience 0, min_delta 0", mut(early_stopping={"patience": 0, "min_delta": 0})),
    ("seed 2^63-1", mut(seed=2 ** 63 - 1)),
    ("privacy local", mut(privacy=PRIV)),
    ("privacy local, noise_multiplier, sample_rate",
     mut(privacy=dict(PRIV, epsilon=0, noise_multiplier=1.1, sample_rate=0.01, clip=0.5))),
    ("privacy local with distill and explain", mut(distill={"student": "logreg"}, explain=True,
                                                   privacy=dict(PRIV, outside_budget=[
                                                       "explain", "stats", "metrics"]))),
    ("privacy distributed", mut(privacy=PDIST)),
    ("privacy distributed, min_honest 2", mut(privacy=dict(PDIST, min_honest=2))),
    ("mlp with 8 layers", mut(model="mlp:" + ",".join(["4"] * 8))),
]
for label, spec in VALID:
    code, _, err = check(spec)
    fvtest.check(code == 0, f"valid spec '{label}': job check exit {code}: {err}")
    errs = schema_errors(spec)
    fvtest.check(not errs, f"valid spec '{label}': docs/job.schema.json refuses it: {errs}")
print(f"{len(INVALID)} invalid specs refused by both, {len(VALID)} valid ones taken by both")

# ---- 6. the template ----------------------------------------------------------------------


def strip_comments(text):
    return "\n".join("" if ln.lstrip().startswith("//") else ln for ln in text.split("\n"))


def template(*args):
    code, out, err = fvtest.run(["job", "template", *args], expect=0)
    return out


tdir = os.path.join(tmp, "tpl")
os.makedirs(tdir)
json.dump(BINARY, open(os.path.join(tdir, "schema.json"), "w"))
variants = [(), ("--model", "mlp:16,8"), ("--secagg", "off"), ("--distill",),
            ("--model", "mlp:4", "--secagg", "off", "--distill")]
for args in variants:
    text = template(*args)
    fvtest.check(text.lstrip().startswith("//") and '"schema": "schema.json"' in text,
                 f"template {args}: {text[:200]}")
    code, out, err = check(None, cwd=tdir, text=text, wrap=True)
    fvtest.check(code == 0, f"template {args} | job check -: exit {code}: {err}")
    canon = json.loads(out)
    plain = json.loads(strip_comments(text))
    errs = schema_errors(plain)
    fvtest.check(not errs, f"template {args} does not validate: {errs}")
    # what the template states is what the parser keeps (the template's values are the
    # defaults, so the spec equals the minimal spec's canonical form but for its choices)
    for k, v in plain.items():
        if k == "schema":
            continue
        c = canon[k]
        fvtest.check(c == v or (isinstance(v, dict) and all(c.get(a) == b for a, b in v.items())),
                     f"template {args}: {k} is {v!r}, the parser keeps {c!r}")
    if not args:
        base_canon = canonical(dict(BASE, name="my-job"))
        fvtest.check(canon == dict(base_canon, schema=canon["schema"]),
                     f"the default template is not the defaults:\n{canon}\n{base_canon}")
    # the commented-out keys ("  // \"key\": value,"), uncommented together, still parse
    # (validation needs SecAgg on)
    lines, n_un = text.split("\n"), 0
    for i, ln in enumerate(lines):
        m = re.fullmatch(r"(\s*)// (\"([a-z_]+)\":.*,)\s*", ln)
        if not m:
            continue
        if m.group(3) == "validation" and "off" in args:
            continue
        lines[i] = m.group(1) + m.group(2)
        n_un += 1
    t2 = "\n".join(lines)
    fvtest.check(n_un >= 2, f"template {args}: {n_un} commented-out keys")
    code, out, err = check(None, cwd=tdir, text=t2)
    fvtest.check(code == 0, f"template {args}, optional keys uncommented: {err}\n{t2}")
    fvtest.check("max_update_norm" in json.loads(out), f"uncommented: {out}")
    fvtest.check(not schema_errors(json.loads(strip_comments(t2))),
                 f"template {args}, optional keys uncommented: does not validate")
# a multi-class schema.json: the same default template checks
json.dump(MULTI, open(os.path.join(tdir, "schema.json"), "w"))
code, out, err = check(None, cwd=tdir, text=template())
fvtest.check(code == 0 and json.loads(out)["hist_bins"] == 0,
             f"template with a multi-class schema: exit {code}: {err}")
# --schema replaces the path; no schema.json at all: the error names the file
bdir = os.path.join(tmp, "b")
os.makedirs(bdir)
json.dump(BINARY, open(os.path.join(bdir, "other.json"), "w"))
code, out, err = check(None, cwd=bdir, text=template(), extra=("--schema", "other.json"))
fvtest.check(code == 0 and json.loads(out)["schema"]["positive"] == "yes", f"--schema: {err}")
code, out, err = check(None, cwd=bdir, text=template())
fvtest.check(code == 1 and "schema.json" in err and "No such file" in err,
             f"a missing schema.json: exit {code}: {err}")
# a spec file: the schema path is relative to the file, not to the working directory
with open(os.path.join(bdir, "job.json"), "w") as f:
    f.write(template().replace('"schema.json"', '"other.json"'))
p = subprocess.run(fvtest.WRAPPER + [fedvault, "job", "check", os.path.join(bdir, "job.json")],
                   capture_output=True, text=True, cwd="/", timeout=600)
fvtest.check(p.returncode == 0 and "a valid job spec: name 'my-job', id " in p.stderr,
             f"job check FILE from /: {p.stderr}")
code, _, err = fvtest.run(["job", "template", "--model", "tree"])
fvtest.check(code == 2 and "--model" in err, f"template --model tree: {code} {err}")
code, _, err = fvtest.run(["job", "template", "--secagg", "maybe"])
fvtest.check(code == 2, f"template --secagg maybe: {code} {err}")
print(f"template: {len(variants)} variants pass job check and the JSON Schema")
print("ok")
