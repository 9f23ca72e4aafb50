#!/usr/bin/env python3
"""mianshen against DuckDB on the same tables and the same catalogue policies, in one run.

    python3 benches/duckdb/compare.py --snapshot DIR [--mianshen target/release/mianshen]
                                      [--work DIR] [--runs 5] [--as-of 2025-12-31]

1. `mianshen export` writes the tables the chosen policies read (CSV: entity id, doubtful
   flag, the columns) into --work (once; reused when present).
2. DuckDB (in memory, all cores) loads them into tables; the load time is reported apart.
3. Each policy is evaluated by both, --runs times each; medians are compared. mianshen runs
   `match` once per policy in a fresh process and reports two evaluation times: cold (nothing
   decoded: columns read from the memory-mapped snapshot, page cache warm) and loaded (the
   field columns decoded, every condition and amount computed again: the analogue of DuckDB's
   tables in memory). DuckDB runs the policy's SQL on its loaded tables.
4. The candidate sets are compared key by key: `catalogue.py` spells out every policy of the
   catalogue in SQL with the policy language's three-valued meaning (datasets/policies/README.md):
   a field is the entity's primary row's (first row whose link is not doubtful), `exists` is
   TRUE only for a row that surely satisfies, `not exists` only when no row could, counts and
   sums are intervals, relations are edges from the rows that name entities. A mismatch is
   printed and makes the exit status 1.

Needs `pip install duckdb`. Not run by CI: it is a benchmark.
"""

import argparse
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import time

import duckdb

from catalogue import policies


def mianshen_match(binary, snapshot, policy, as_of):
    """(candidate keys, (cold ms, loaded ms)) from one `match` process."""
    out = subprocess.run(
        [binary, "match", "--snapshot", snapshot, policy, "--as-of", str(as_of),
         "--limit", "100000000"],
        check=True, capture_output=True, text=True,
    ).stdout
    ms = None
    keys = set()
    listing = False
    # The table's last five columns: cold, loaded, recombined, combining, amounts (ms).
    header = "cold ms loaded ms recomb ms combine amounts"
    if not any(" ".join(line.split()).endswith(header) for line in out.splitlines()):
        sys.exit(f"`mianshen match` printed no table ending in `{header}`: was its output changed?")
    for line in out.splitlines():
        cols = line.split()
        if cols and cols[0] == policy and ms is None and len(cols) >= 6:
            ms = (float(cols[-5]), float(cols[-4]))
        elif line.startswith(f"{policy} first candidates"):
            listing = True
        elif listing and line.startswith("  ") and cols:
            keys.add(cols[0])
        elif listing:
            listing = False
    return keys, ms


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--snapshot", required=True)
    ap.add_argument("--mianshen", default="target/release/mianshen")
    ap.add_argument("--work", default=None, help="export folder (default: SNAPSHOT/../duckdb-export)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--as-of", default="2025-12-31")
    ap.add_argument("--only", default=None, help="comma-separated policy ids")
    args = ap.parse_args()
    as_of = dt.date.fromisoformat(args.as_of)
    snapshot = os.path.abspath(args.snapshot)
    work = args.work or os.path.join(os.path.dirname(snapshot.rstrip("/")), "duckdb-export")
    chosen = policies(as_of)
    if args.only:
        chosen = {k: v for k, v in chosen.items() if k in args.only.split(",")}
    tables = sorted({t for ts, _ in chosen.values() for t in ts})

    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs; "
          f"duckdb {duckdb.__version__}; {dt.date.today()}")
    missing = [t for t in tables + ["entities"] if not os.path.exists(os.path.join(work, f"{t}.csv"))]
    if missing:
        t = time.perf_counter()
        subprocess.run([args.mianshen, "export", "--snapshot", snapshot, "--out", work,
                        "--tables", ",".join(tables)], check=True, capture_output=True)
        print(f"export: {time.perf_counter() - t:.1f} s ({', '.join(tables)})")

    con = duckdb.connect()
    t = time.perf_counter()
    rows = {}
    for name in tables + ["entities"]:
        sql_name = name.replace(".", "_")
        path = os.path.join(work, f"{name}.csv")
        con.execute(f"CREATE TABLE {sql_name} AS SELECT * FROM read_csv('{path}', header = true, "
                    f"sample_size = -1)")
        rows[name] = con.execute(f"SELECT count(*) FROM {sql_name}").fetchone()[0]
    print(f"duckdb load: {time.perf_counter() - t:.1f} s, "
          + ", ".join(f"{k} {v:,}" for k, v in rows.items()))
    keys = dict(con.execute("SELECT entity, key FROM entities").fetchall())

    print(f"\n{'policy':8}{'candidates':>12}{'ours cold':>11}{'ours loaded':>13}{'duckdb':>10}"
          f"{'vs cold':>9}{'vs loaded':>11}  same candidates")
    failed = False
    totals = [0.0, 0.0, 0.0]
    for pid, (_, sql) in chosen.items():
        cold, loaded, theirs_ms = [], [], []
        ours_keys = theirs_keys = None
        for _ in range(args.runs):
            ours_keys, (c, l) = mianshen_match(args.mianshen, snapshot, pid, as_of)
            cold.append(c)
            loaded.append(l)
            t = time.perf_counter()
            result = con.execute(sql).fetchall()
            theirs_ms.append((time.perf_counter() - t) * 1e3)
            theirs_keys = {keys[e] for (e,) in result}
        c, l, d = (statistics.median(x) for x in (cold, loaded, theirs_ms))
        for i, x in enumerate((c, l, d)):
            totals[i] += x
        agree = ours_keys == theirs_keys
        failed |= not agree
        print(f"{pid:8}{len(ours_keys):>12,}{c:>11.2f}{l:>13.2f}{d:>10.2f}{d / c:>8.1f}×{d / l:>10.1f}×  "
              + ("yes" if agree else
                 f"NO: {len(ours_keys - theirs_keys)} only ours, {len(theirs_keys - ours_keys)} only duckdb"))
    c, l, d = totals
    print(f"{'all':8}{'':>12}{c:>11.2f}{l:>13.2f}{d:>10.2f}{d / c:>8.1f}×{d / l:>10.1f}×  "
          "(ms, sums of medians; ratios = duckdb time / ours)")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
