"""Splits a Lending Club CSV into five regional banks by the borrower's state (addr_state).

usage: split_regions.py IN.csv OUTDIR
Writes OUTDIR/<bank>.csv for bank-west, bank-central, bank-northeast, bank-southeast and
bank-midwest, each with the header row, rows in input order. Every state belongs to
exactly one region; a state not listed stops the script (the data changed: say where it
belongs).
"""
import csv
import os
import sys

REGIONS = {
    "bank-west": "CA WA OR NV AZ CO UT NM HI AK ID MT WY",
    "bank-central": "TX OK LA AR KS MO NE SD ND MN IA",
    "bank-northeast": "NY NJ PA MA CT RI NH VT ME DE MD DC",
    "bank-southeast": "FL GA NC SC VA WV TN AL MS KY",
    "bank-midwest": "IL OH MI IN WI",
}
STATE = {s: bank for bank, states in REGIONS.items() for s in states.split()}

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
with open(src, newline="") as f:
    rows = list(csv.reader(f))
header, body = rows[0], rows[1:]
col = header.index("addr_state")
files = {b: open(os.path.join(out, b + ".csv"), "w", newline="") for b in REGIONS}
writers = {b: csv.writer(fh)
           for b, fh in files.items()}
counts = dict.fromkeys(REGIONS, 0)
for w in writers.values():
    w.writerow(header)
for i, r in enumerate(body, start=2):
    bank = STATE.get(r[col])
    if bank is None:
        sys.exit(f"{src}:{i}: addr_state '{r[col]}' is in no region of {__file__}")
    writers[bank].writerow(r)
    counts[bank] += 1
for fh in files.values():
    fh.close()
print(" ".join(f"{b}={n}" for b, n in counts.items()))
