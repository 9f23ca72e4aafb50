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
4. The candidate sets are compared key by key: the SQL below spells out the policy language's
   three-valued meaning (datasets/policies/README.md): a field is the entity's primary row's
   (first row whose link is not doubtful), `exists` is TRUE only for a row that surely
   satisfies, `not exists` only when no row could, `count(...) == 0` only when no row, doubtful
   or not, could count. A mismatch is printed and makes the exit status 1.

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


def minus_years(d, n):
    """`d - n years` as the policy language reads it: month and day kept, 29 Feb → 1 Mar."""
    try:
        return d.replace(year=d.year - n)
    except ValueError:
        return dt.date(d.year - n, 3, 1)


def months_back(d, n):
    """First day of the month `n` months before `d`'s."""
    m = d.year * 12 + d.month - 1 - n
    return dt.date(m // 12, m % 12 + 1, 1)


def leap(y):
    return f"(({y}) % 4 = 0 AND (({y}) % 100 <> 0 OR ({y}) % 400 = 0))"


def age(birth, as_of):
    """Whole years at `as_of`, turning a year older on the birthday (29 Feb: on 1 Mar)."""
    # The birthday in as_of's year, as (month, day); 29 Feb in a common year is 1 Mar.
    md = (
        f"(CASE WHEN month({birth}) = 2 AND day({birth}) = 29 AND NOT {leap(as_of.year)} "
        f"THEN 301 ELSE month({birth}) * 100 + day({birth}) END)"
    )
    return (
        f"({as_of.year} - year({birth}) - "
        f"(CASE WHEN {md} > {as_of.month * 100 + as_of.day} THEN 1 ELSE 0 END))"
    )


def primary(table, alias):
    """The entity's primary row of `table`: its first row whose link is not doubtful."""
    return (
        f"{alias} AS (SELECT * FROM {table} WHERE doubtful = 0 AND entity IS NOT NULL "
        f"QUALIFY row_number() OVER (PARTITION BY entity ORDER BY rowid) = 1)"
    )


def policies(as_of):
    a = f"DATE '{as_of}'"
    y2 = f"DATE '{minus_years(as_of, 2)}'"
    y3 = f"DATE '{minus_years(as_of, 3)}'"
    m_now = f"DATE '{months_back(as_of, 0)}'"
    m6 = f"DATE '{months_back(as_of, 6)}'"
    m12 = f"DATE '{months_back(as_of, 12)}'"
    as_of_month = as_of.year * 12 + as_of.month - 1
    b80 = "p.birth_date"
    person = "JOIN entities e ON e.entity = p.entity AND e.kind = 'person'"
    local_active = (
        "p.hukou_region >= 411400 AND p.hukou_region < 411500 AND p.status = '正常'"
    )
    return {
        # 高龄津贴: fields of the primary 户籍 row, a date shifted by years, two exclusions.
        "M01": (
            ["GA.person", "WJ.death_cert", "MZ.tekun"],
            f"""WITH {primary('GA_person', 'p')}
            SELECT p.entity FROM p {person}
            WHERE {local_active}
              AND (year({b80}) + 80) * 12 + month({b80}) - 1
                  + (CASE WHEN month({b80}) = 2 AND day({b80}) = 29
                          AND NOT {leap(f'year({b80}) + 80')} THEN 1 ELSE 0 END) < {as_of_month}
              AND NOT EXISTS (SELECT 1 FROM WJ_death_cert d WHERE d.entity = p.entity)
              AND NOT EXISTS (SELECT 1 FROM MZ_tekun t WHERE t.entity = p.entity
                              AND (t.type IS NULL OR t.type = '集中'))""",
        ),
        # 重度残疾人护理补贴: exists over certificates with nested and/or, a date bound.
        "M03": (
            ["GA.person", "CL.cert"],
            f"""WITH {primary('GA_person', 'p')}
            SELECT p.entity FROM p {person}
            WHERE {local_active}
              AND EXISTS (SELECT 1 FROM CL_cert c WHERE c.entity = p.entity AND c.doubtful = 0
                          AND c.status = '有效'
                          AND (c.grade IN (1, 2) OR (c.grade = 3 AND c.category IN ('智力', '精神'))))
              AND EXISTS (SELECT 1 FROM CL_cert c WHERE c.entity = p.entity AND c.doubtful = 0
                          AND c.status = '有效' AND c.review_due >= {a})""",
        ),
        # 高校毕业生来商就业生活补贴: age, a 2-year window, and a count over the 6 latest months
        # of the contribution events (the largest table here).
        "T01": (
            ["GA.person", "JY.grad", "RS.contrib"],
            f"""WITH {primary('GA_person', 'p')},
            paid AS (SELECT entity FROM RS_contrib WHERE doubtful = 0 AND insurance = '养老'
                     AND month > {m6} AND month <= {m_now}
                     GROUP BY entity HAVING count(*) >= 6)
            SELECT p.entity FROM p {person} JOIN paid ON paid.entity = p.entity
            WHERE {age('p.birth_date', as_of)} <= 35
              AND EXISTS (SELECT 1 FROM JY_grad g WHERE g.entity = p.entity AND g.doubtful = 0
                          AND g.degree IN ('本科', '硕士', '博士')
                          AND g.grad_date > {y2} AND g.grad_date <= {a})""",
        ),
        # 新投产项目用电补贴: two exists over enterprise tables.
        "I02": (
            ["FG.project", "DL.account"],
            f"""SELECT e.entity FROM entities e
            WHERE e.kind = 'enterprise'
              AND EXISTS (SELECT 1 FROM FG_project f WHERE f.entity = e.entity AND f.doubtful = 0
                          AND f.commission_date > {y2} AND f.commission_date <= {a})
              AND EXISTS (SELECT 1 FROM DL_account d WHERE d.entity = e.entity AND d.doubtful = 0
                          AND d.customer_type IN ('大工业', '一般工商业'))""",
        ),
        # 旅行社质量保证金暂退: primary-row fields, and count(...) == 0 (no row may count).
        "E03": (
            ["WL.deposit", "WL.agency", "SC.penalty"],
            f"""WITH {primary('WL_deposit', 'p')}
            SELECT p.entity FROM p JOIN entities e ON e.entity = p.entity AND e.kind = 'enterprise'
            WHERE p.form = '现金' AND p.court_frozen = 0 AND p.refund_outstanding = 0
              AND EXISTS (SELECT 1 FROM WL_agency g WHERE g.entity = p.entity AND g.doubtful = 0
                          AND g.licence_status = '有效')
              AND NOT EXISTS (SELECT 1 FROM SC_penalty s WHERE s.entity = p.entity
                  AND NOT ((s.date IS NOT NULL AND NOT (s.date > {y3} AND s.date <= {a}))
                           OR (s.type IS NOT NULL AND s.type = '警告')))""",
        ),
        # 城乡居民医保参保资助 is left out: its MZ.tekun window is like M01's. The time-window
        # aggregate over all events is timed by `mianshen match` on its own (BENCHMARKS.md).
    }


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
    for line in out.splitlines():
        cols = line.split()
        if cols and cols[0] == policy and ms is None and len(cols) >= 3:
            ms = (float(cols[-2]), float(cols[-1]))
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
