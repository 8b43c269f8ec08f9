"""Setting up a Lending Club federation for the federation tests (stdlib only).

Like the main job (examples/lending-club/run.sh): 25 % of the shipped rows held out
(stratified, seed 0) as a test split drawn from every bank, the rest split into five
regional banks by state, and a provisioned federation with one kit per bank.
"""
import json
import os
import subprocess

import fvtest

WRAPPER = fvtest.WRAPPER
SLOW = fvtest.SLOW
BANKS = ["bank-central", "bank-midwest", "bank-northeast", "bank-southeast", "bank-west"]


def setup(tmp, federation):
    """Writes tmp/train.csv, tmp/test.csv, tmp/banks/<bank>.csv and the kits in tmp/fed."""
    fvtest.run(["split", "--data", os.path.join(fvtest.DATA, "lending_club.csv"), "--target",
                "Class", "--positive", "bad", "--test-fraction", "0.25", "--seed", "0",
                "--train-out", f"{tmp}/train.csv", "--test-out", f"{tmp}/test.csv"], expect=0)
    subprocess.run(["/usr/bin/python3",
                    os.path.join(fvtest.SRC, "examples/lending-club/split_regions.py"),
                    f"{tmp}/train.csv", f"{tmp}/banks"], check=True, capture_output=True)
    fvtest.run(["provision", "--federation", federation, "--coordinator", "127.0.0.1:0",
                "--agents", ",".join(BANKS), "--admins", "ops-1", "--out", f"{tmp}/fed"],
               expect=0)


def job_spec(**overrides):
    """The main job's spec (examples/lending-club/job.json) made small for the tests that
    exercise the machinery rather than the model: mlp:16, 3 rounds of 1 local epoch, no
    early stopping, no distillation, deadlines scaled for valgrind; then overrides."""
    job = json.load(open(os.path.join(fvtest.SRC, "examples/lending-club/job.json")))
    job.pop("distill", None)
    job.update({"model": "mlp:16", "rounds": 3, "local_epochs": 1,
                "early_stopping": {"metric": "roc_auc", "patience": 0},
                "deadlines_ms": {"join": 120000 * SLOW, "train": 120000 * SLOW,
                                 "secagg_phase": 60000 * SLOW}})
    job.update(overrides)
    return job
