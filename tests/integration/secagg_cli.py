"""`fedvault bench secagg` through the real CLI on small configurations: the unmasked sum
is exact (and the command exits 0) for classic SecAgg and SecAgg+ with dropouts at each
phase; below the threshold it exits 1 with a message naming the threshold; bad options
exit 2 naming the option; --json has the promised keys.
"""
from fvtest import check, run, run_json

KEYS = ("exact", "total_cpu_s", "prg_bound_s", "ka_bound_s", "phases", "verify_clients",
        "verify_server", "sign_clients", "mac_clients", "server_unmask_cpu_s",
        "server_unmask_wall_s")


def main():
    for args in (["--clients", "8", "--dim", "1000"],
                 ["--clients", "12", "--dim", "777", "--dropout", "0.25"],
                 ["--clients", "20", "--dim", "500", "--neighbors", "8", "--dropout", "0.1",
                  "--dropout-phase", "3"],
                 ["--clients", "10", "--dim", "300", "--dropout", "0.1", "--dropout-phase", "0"],
                 ["--clients", "10", "--dim", "300", "--dropout", "0.2", "--dropout-phase", "4"]):
        r = run_json(["bench", "secagg"] + args + ["--seed", "3"])
        for k in KEYS:
            check(k in r, f"bench secagg --json lacks {k!r}")
        check(r["exact"] is True, f"not exact: {args}")
        # Ed25519 verifications: each client checks its U1 neighbours' keys once (share keys),
        # the server each ADVERTISE; the consistency check is MACs (two per neighbour pair)
        n = r["clients"]
        check(r["verify_server"] == r["set_sizes_U1_U5"][0], f"server verifications: {r}")
        check(r["verify_clients"] <= n * r["neighbors"], f"client verifications: {r}")
        check(r["sign_clients"] == r["set_sizes_U1_U5"][0], f"client signatures: {r}")
        print(f"bench secagg {' '.join(args)}: exact, total CPU {r['total_cpu_s']:.4f} s")
    # more than n - t drop out: a clean failure, not a wrong sum
    rc, out, err = run(["bench", "secagg", "--clients", "10", "--dim", "100", "--dropout",
                        "0.6", "--seed", "3"])
    check(rc == 1, f"below threshold: exit {rc}, expected 1; {err}")
    check("threshold" in err.lower(), f"message does not mention the threshold: {err!r}")
    for bad in (["--clients", "2"], ["--dim", "0"], ["--neighbors", "3", "--clients", "10"],
                ["--dropout", "1.5"], ["--bogus"]):
        rc, _, err = run(["bench", "secagg"] + bad)
        check(rc == 2, f"bench secagg {bad}: exit {rc}, expected 2: {err}")
    print("secagg_cli: OK")


if __name__ == "__main__":
    main()
