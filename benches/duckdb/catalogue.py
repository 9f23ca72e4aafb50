"""The catalogue's 27 policies as DuckDB SQL, with the policy language's three-valued meaning.

Every condition is TRUE, FALSE or UNKNOWN (datasets/policies/README.md). A condition here is a
`Cond`: two SQL predicates that are never NULL, `t` (the condition is TRUE) and `f` (it is
FALSE); UNKNOWN is neither. `and`, `or` and `not` then follow Kleene's logic exactly:

    t(a and b) = t(a) AND t(b)      f(a and b) = f(a) OR f(b)
    t(a or b)  = t(a) OR t(b)       f(a or b)  = f(a) AND f(b)
    t(not a)   = f(a)               f(not a)   = t(a)

The atoms, for a subject entity S:

- a field is the value in S's primary row of its table, the first row whose link is not
  doubtful (a missing value, or no such row, makes a comparison UNKNOWN: SQL's NULL);
- `exists(T where c)` is TRUE when a row with a sure link satisfies c, FALSE when no row could:
  a row's own fields read through a doubtful link make its comparisons UNKNOWN, so a doubtful
  row could always satisfy c (the catalogue's `is_missing(x) or x > d` filters are never
  definitely FALSE on such a row either);
- `count(...)` is the interval [rows that surely count, rows that may]; a comparison is TRUE
  or FALSE only when every value in the interval agrees;
- relations are edges (from, to, doubtful) from every row of the table that names an entity;
  an edge is doubtful when every row giving it is; `any`, `count` over them as above;
- `policy(X)` is TRUE for X's candidates and FALSE when one of X's conditions is FALSE.

A policy's candidates are the entities of its subject kind for which every condition is TRUE.
"""

import datetime as dt
import itertools

_alias = itertools.count()


def fresh(prefix):
    """A table alias no other part of the query uses."""
    return f"{prefix}{next(_alias)}"


def table_sql(name):
    """`GA.person` → the DuckDB table `GA_person`."""
    return name.replace(".", "_")


class Cond:
    """A condition's TRUE and FALSE predicates (SQL, never NULL)."""

    def __init__(self, t, f):
        self.t, self.f = t, f


def AND(*cs):
    return Cond("(" + " AND ".join(c.t for c in cs) + ")", "(" + " OR ".join(c.f for c in cs) + ")")


def OR(*cs):
    return Cond("(" + " OR ".join(c.t for c in cs) + ")", "(" + " AND ".join(c.f for c in cs) + ")")


def NOT(c):
    return Cond(c.f, c.t)


def shift(d, n, unit):
    """`d` moved by `n` units as the engine moves dates: month ends clamp, 29 Feb + 1 year
    is 1 Mar."""
    if unit == "days":
        return d + dt.timedelta(days=n)
    if unit == "years":
        try:
            return d.replace(year=d.year + n)
        except ValueError:
            return dt.date(d.year + n, 3, 1)
    m = d.year * 12 + d.month - 1 + n
    y, mo = divmod(m, 12)
    mo += 1
    last = (dt.date(y + (mo == 12), mo % 12 + 1, 1) - dt.timedelta(days=1)).day
    return dt.date(y, mo, min(d.day, last))


def leap(y):
    return f"(({y}) % 4 = 0 AND (({y}) % 100 <> 0 OR ({y}) % 400 = 0))"


class Catalogue:
    """The SQL of every policy at one as-of date."""

    def __init__(self, as_of):
        self.as_of = as_of
        self.a = f"DATE '{as_of}'"
        self.year = as_of.year

    # ---- pieces of SQL

    def within(self, x, n, unit):
        """`x within n unit`: as_of − n unit < x ≤ as_of (months compare by their first day,
        which orders them the same way against these bounds)."""
        return f"({x} > DATE '{shift(self.as_of, -n, unit)}' AND {x} <= {self.a})"

    def age(self, birth):
        """Whole years at as_of, a year older on the birthday (29 Feb: on 1 Mar)."""
        a = self.as_of
        md = (
            f"(CASE WHEN month({birth}) = 2 AND day({birth}) = 29 AND NOT {leap(a.year)} "
            f"THEN 301 ELSE month({birth}) * 100 + day({birth}) END)"
        )
        return f"({a.year} - year({birth}) - (CASE WHEN {md} > {a.month * 100 + a.day} THEN 1 ELSE 0 END))"


class Query:
    """One policy's query: the views it needs (primary rows, relation edges) and its
    conditions."""

    def __init__(self, cat, subject):
        self.cat = cat
        self.subject = subject
        self.views = {}
        self.tables = set()

    def primary(self, table):
        """The view of `table`'s primary rows: each entity's first row with a sure link."""
        name = "P_" + table_sql(table)
        self.tables.add(table)
        self.views[name] = (
            f"SELECT * FROM {table_sql(table)} WHERE doubtful = 0 AND entity IS NOT NULL "
            f"QUALIFY row_number() OVER (PARTITION BY entity ORDER BY rowid) = 1"
        )
        return name

    def relation(self, name, table, column, direction):
        """The edges of a relation declared in relations.policy: `->` from the row's entity to
        the entity its column names, `<-` the other way."""
        view = "R_" + name
        self.tables.add(table)
        ref = f"{column}_entity"
        a, b = ("entity", ref) if direction == "->" else (ref, "entity")
        self.views[view] = (
            f"SELECT {a} AS src, {b} AS dst, min(doubtful) AS doubtful FROM {table_sql(table)} "
            f"WHERE entity IS NOT NULL AND {ref} IS NOT NULL GROUP BY ALL"
        )
        return view

    # ---- atoms, each a function of the subject (an SQL expression naming an entity)

    def field(self, table, pred):
        """A comparison of fields of the primary row of `table`; `pred` reads them as `{q}.x`."""
        view = self.primary(table)

        def at(s):
            q = fresh("q")
            p = pred.format(q=q)
            return Cond(
                f"EXISTS (SELECT 1 FROM {view} {q} WHERE {q}.entity = {s} AND ({p}))",
                f"EXISTS (SELECT 1 FROM {view} {q} WHERE {q}.entity = {s} AND ({p}) IS FALSE)",
            )

        return at

    def _rows(self, table, s, r, pred):
        self.tables.add(table)
        sure = f"{r}.doubtful = 0" + (f" AND ({pred.format(r=r)})" if pred else "")
        maybe = f"({r}.doubtful = 1 OR ({pred.format(r=r)}) IS NOT FALSE)" if pred else "TRUE"
        return f"{table_sql(table)} {r} WHERE {r}.entity = {s}", sure, maybe

    def exists(self, table, pred=None):
        """`exists(table where pred)`; `pred` reads the row's fields as `{r}.x`."""

        def at(s):
            r = fresh("r")
            rows, sure, maybe = self._rows(table, s, r, pred)
            return Cond(f"EXISTS (SELECT 1 FROM {rows} AND {sure})",
                        f"NOT EXISTS (SELECT 1 FROM {rows} AND {maybe})")

        return at

    def count(self, table, pred=None):
        """`count(table where pred)` as (sure, possible) SQL counts."""

        def at(s):
            r = fresh("r")
            rows, sure, maybe = self._rows(table, s, r, pred)
            return (f"(SELECT count(*) FROM {rows} AND {sure})",
                    f"(SELECT count(*) FROM {rows} AND {maybe})")

        return at

    def fold(self, agg, table, column, pred=None):
        """`sum` / `max` / `min` of `column` over the rows passing `pred`, as the interval's
        (low, high) ends; NULL for an end that is unbounded or a missing value."""

        def at(s):
            r = fresh("r")
            rows, sure, maybe = self._rows(table, s, r, pred)
            x = f"{r}.{column}"
            if agg == "sum":
                # Possible rows widen the interval by their negative and positive parts; an
                # entity without rows in the table has no sum.
                lo = (f"(SELECT CASE WHEN count(*) > 0 THEN coalesce(sum(CASE WHEN {sure} THEN {x} "
                      f"ELSE least({x}, 0) END) FILTER (WHERE {maybe}), 0) END FROM {rows})")
                hi = (f"(SELECT CASE WHEN count(*) > 0 THEN coalesce(sum(CASE WHEN {sure} THEN {x} "
                      f"ELSE greatest({x}, 0) END) FILTER (WHERE {maybe}), 0) END FROM {rows})")
                return lo, hi
            sure_x = f"(SELECT {agg}({x}) FROM {rows} AND {sure})"
            maybe_x = f"(SELECT {agg}({x}) FROM {rows} AND {maybe})"
            # max: [sure max, possible max]; min: [possible min, sure min].
            return (sure_x, maybe_x) if agg == "max" else (maybe_x, sure_x)

        return at

    def any(self, view, body=None):
        """`any(relation: body)` (also `exists(relation)` and `count(relation) >= 1`)."""

        def at(s):
            m = fresh("m")
            b = body(f"{m}.dst") if body else Cond("TRUE", "FALSE")
            return Cond(
                f"EXISTS (SELECT 1 FROM {view} {m} WHERE {m}.src = {s} AND {m}.doubtful = 0 AND {b.t})",
                f"NOT EXISTS (SELECT 1 FROM {view} {m} WHERE {m}.src = {s} AND NOT {b.f})",
            )

        return at

    def rel_count(self, view, body=None):
        """`count(relation: body)` as (sure, possible) SQL counts."""

        def at(s):
            m = fresh("m")
            b = body(f"{m}.dst") if body else Cond("TRUE", "FALSE")
            return (f"(SELECT count(*) FROM {view} {m} WHERE {m}.src = {s} AND {m}.doubtful = 0 AND {b.t})",
                    f"(SELECT count(*) FROM {view} {m} WHERE {m}.src = {s} AND NOT {b.f})")

        return at

    # ---- the query

    def sql(self, conditions):
        """The subject's entities for which every condition (functions of the subject) is TRUE."""
        where = " AND ".join(c("e.entity").t for c in conditions)
        views = ",\n".join(f"{k} AS ({v})" for k, v in self.views.items())
        return (f"WITH {views}\n" if views else "") + (
            f"SELECT e.entity FROM entities e WHERE e.kind = '{self.subject}' AND {where}"
        )

    def state(self, conditions):
        """`policy(X)` for another policy's conditions: TRUE for its candidates, FALSE when
        one of them is FALSE."""
        return lambda s: AND(*(c(s) for c in conditions))


# Interval comparisons: `lo`/`hi` are SQL for the interval's ends.

def at_least(counts, k):
    """`count >= k`."""

    def at(s):
        lo, hi = counts(s)
        return Cond(f"({lo} >= {k})", f"({hi} < {k})")

    return at


def exactly(counts, k):
    """`count == k`."""

    def at(s):
        lo, hi = counts(s)
        return Cond(f"({lo} = {k} AND {hi} = {k})", f"({lo} > {k} OR {hi} < {k})")

    return at


def both(*cs):
    return lambda s: AND(*(c(s) for c in cs))


def either(*cs):
    return lambda s: OR(*(c(s) for c in cs))


def negate(c):
    return lambda s: NOT(c(s))


def policies(as_of):
    """{id: (tables read, SQL)} for the whole catalogue."""
    cat = Catalogue(as_of)
    y, a = cat.year, cat.a
    out = {}

    def person_rel(q):
        return {
            "members": lambda: q.relation("members", "GA.person", "household_no", "<-"),
            "employees": lambda: q.relation("employees", "RS.insured", "uscc_employer", "<-"),
            "contracted": lambda: q.relation("contracted", "RS.employ_reg", "uscc", "<-"),
            "laid_off": lambda: q.relation("laid_off", "RS.ui_benefit", "last_uscc", "<-"),
            "represented": lambda: q.relation("represented", "SC.ent", "legal_rep_pid", "<-"),
            "legal_rep": lambda: q.relation("legal_rep", "SC.ent", "legal_rep_pid", "->"),
            "spouse": lambda: q.relation("spouse", "MZ.marriage", "pid_b", "->"),
            "mother": lambda: q.relation("mother", "WJ.birth_cert", "mother_pid", "->"),
            "father": lambda: q.relation("father", "WJ.birth_cert", "father_pid", "->"),
            "serves": lambda: q.relation("serves", "KJ.commissioner", "served_uscc", "->"),
        }

    def add(pid, q, conditions):
        sql = q.sql(conditions)  # renders the conditions, which names the tables they read
        out[pid] = (sorted(q.tables), sql)

    # Shared pieces of several policies.
    def local(q):
        return q.field("GA.person", "{q}.hukou_region >= 411400 AND {q}.hukou_region < 411500")

    def active(q):
        return q.field("GA.person", "{q}.status = '正常'")

    def ent_active(q):
        return q.field("SC.ent", "{q}.status IN ('存续', '在业')")

    def trustworthy(q):
        return negate(q.exists("XY.blacklist", f"{{r}}.out_date IS NULL OR {{r}}.out_date > {a}"))

    def tekun_now(q):
        return q.exists("MZ.tekun", f"{{r}}.\"end\" IS NULL OR {{r}}.\"end\" > {a}")

    def hardship_now(q):
        return q.exists("RS.hardship", f"{{r}}.\"end\" IS NULL OR {{r}}.\"end\" > {a}")

    def small(q):
        # 个体工商户, or fewer than 100 employees in last year's annual report (every value the
        # maximum could take below 100).
        mx = q.fold("max", "SC.annual_report", "employees", f"{{r}}.year = {y - 1}")
        return either(
            q.field("SC.ent", "{q}.type = '个体工商户'"),
            lambda s: Cond(f"(({mx(s)[1]}) < 100) IS TRUE", f"(({mx(s)[0]}) >= 100) IS TRUE"),
        )

    def m08(q):
        rel = person_rel(q)
        dead = either(q.field("GA.person", "{q}.status = '死亡注销'"), q.exists("WJ.death_cert"))
        return [
            q.field("GA.person", f"{cat.age('{q}.birth_date')} < 18"),
            active(q),
            either(both(q.any(rel["mother"](), dead), q.any(rel["father"](), dead)),
                   q.exists("MZ.unsupported_child")),
        ]

    # 惠民
    q = Query(cat, "person")
    b = "{q}.birth_date"
    add("M01", q, [
        local(q), active(q),
        q.field("GA.person",
                f"(year({b}) + 80) * 12 + month({b}) - 1 + (CASE WHEN month({b}) = 2 AND day({b}) = 29 "
                f"AND NOT {leap(f'year({b}) + 80')} THEN 1 ELSE 0 END) < {as_of.year * 12 + as_of.month - 1}"),
        negate(q.exists("WJ.death_cert")),
        negate(q.exists("MZ.tekun", "{r}.type = '集中'")),
    ])
    q = Query(cat, "person")
    add("M02", q, [
        q.exists("CL.cert", "{r}.status = '有效'"),
        either(q.exists("MZ.dibao_member"), tekun_now(q)),
        local(q), active(q),
        negate(q.state(m08(q))),
    ])
    q = Query(cat, "person")
    add("M03", q, [
        q.exists("CL.cert", "{r}.status = '有效' AND ({r}.grade IN (1, 2) OR ({r}.grade = 3 "
                 "AND {r}.category IN ('智力', '精神')))"),
        q.exists("CL.cert", f"{{r}}.status = '有效' AND {{r}}.review_due >= {a}"),
        local(q), active(q),
    ])
    q = Query(cat, "person")
    add("M04", q, [
        q.exists("YB.enrol", f"{{r}}.year = {y} AND {{r}}.scheme = '城乡居民'"),
        either(tekun_now(q), q.exists("MZ.dibao_member"),
               q.exists("NY.poverty_monitor", "{r}.type = '监测户'")),
    ])
    for pid, metered in (("M05", True), ("M06", False)):
        q = Query(cat, "household")
        members = person_rel(q)["members"]()
        conds = [q.any(members, either(q.exists("MZ.dibao_member"), tekun_now(q)))]
        if metered:
            conds.append(q.any(members, q.exists("DL.account", "{r}.customer_type = '居民'")))
        add(pid, q, conds)
    q = Query(cat, "person")
    add("M07", q, [
        q.field("GA.person", "{q}.hukou_type = '农业'"),
        q.exists("WJ.family_planning", "{r}.family_type IN ('独生子女', '双女')"),
        q.field("GA.person", f"{cat.age('{q}.birth_date')} >= 60"),
        active(q),
    ])
    q = Query(cat, "person")
    add("M08", q, m08(q))
    q = Query(cat, "person")
    homes = q.count("BDC.ownership", "{r}.\"use\" = '住宅'")
    add("M09", q, [
        q.exists("BDC.ownership", "{r}.acquire_type = '买卖' AND {r}.\"use\" = '住宅' AND "
                 + cat.within("{r}.acquire_date", 1, "years")),
        both(exactly(homes, 1),
             negate(q.any(person_rel(q)["spouse"](), q.exists("BDC.ownership", "{r}.\"use\" = '住宅'")))),
        q.exists("SW.deed_tax", cat.within("{r}.date", 1, "years")),
    ])

    # 惠人才
    q = Query(cat, "person")
    add("T01", q, [
        q.exists("JY.grad", "{r}.degree IN ('本科', '硕士', '博士') AND "
                 + cat.within("{r}.grad_date", 2, "years")),
        q.field("GA.person", f"{cat.age('{q}.birth_date')} <= 35"),
        at_least(q.count("RS.contrib", "{r}.insurance = '养老' AND "
                         + cat.within("{r}.month", 6, "months")), 6),
    ])
    q = Query(cat, "person")
    add("T02", q, [
        at_least(q.count("RS.contrib", "{r}.insurance = '失业' AND "
                         + cat.within("{r}.month", 36, "months")), 12),
        q.exists("RS.skill_cert", cat.within("{r}.issue_date", 12, "months") + " AND {r}.level IN (3, 4, 5)"),
    ])
    q = Query(cat, "person")
    add("T03", q, [
        either(q.exists("JY.grad", "{r}.degree IN ('硕士', '博士')"), q.exists("RC.high_talent")),
        both(exactly(q.count("BDC.ownership", "{r}.\"use\" = '住宅'"), 1),
             q.exists("BDC.ownership", "{r}.acquire_type = '买卖' AND {r}.\"use\" = '住宅' AND "
                      + cat.within("{r}.acquire_date", 1, "years"))),
        either(at_least(q.count("RS.contrib", "{r}.insurance = '养老' AND "
                                + cat.within("{r}.month", 12, "months")), 12),
               at_least(q.count("GJJ.deposit", cat.within("{r}.month", 12, "months")), 12)),
    ])
    q = Query(cat, "person")
    add("T04", q, [
        q.exists("KJ.commissioner", f"{{r}}.year = {y} AND {{r}}.status = '在册'"),
        q.any(person_rel(q)["serves"](), q.exists("NY.new_entity")),
    ])

    # 惠企
    q = Query(cat, "enterprise")
    rel = person_rel(q)
    laid = q.rel_count(rel["laid_off"](), q.exists("RS.ui_benefit", f"year({{r}}.start_month) = {y - 1}"))
    insured = q.fold("max", "RS.employer_ui_year", "avg_insured", f"{{r}}.year = {y - 1}")

    def layoffs_low(s):
        (l_lo, l_hi), (i_lo, i_hi) = laid(s), insured(s)

        def le(x, rate):  # count <= rate * max: TRUE / FALSE over both intervals
            return Cond(f"(({x[1]}) <= {rate}::DOUBLE * ({i_lo})) IS TRUE",
                        f"(({x[0]}) > {rate}::DOUBLE * ({i_hi})) IS TRUE")

        small_firm = Cond(f"(({i_hi}) <= 30) IS TRUE", f"(({i_lo}) > 30) IS TRUE")
        return OR(le((l_lo, l_hi), 0.055), AND(small_firm, le((l_lo, l_hi), 0.2)))

    add("E01", q, [
        q.exists("RS.employer_ui_year", f"{{r}}.year = {y - 1} AND {{r}}.months_paid >= 12"),
        layoffs_low, trustworthy(q), ent_active(q),
    ])
    q = Query(cat, "enterprise")
    person = q.field("GA.person", f"{cat.age('{q}.birth_date')} >= 16 AND {cat.age('{q}.birth_date')} < 25")
    hire = both(
        q.exists("RS.employ_reg", cat.within("{r}.contract_start", 1, "years")),
        either(q.exists("JY.grad", cat.within("{r}.grad_date", 2, "years")),
               both(q.exists("RS.unemp_reg"), person)),
        at_least(q.count("RS.contrib", "{r}.insurance = '失业' AND " + cat.within("{r}.month", 12, "months")), 3),
    )
    add("E02", q, [at_least(q.rel_count(person_rel(q)["contracted"](), hire), 1),
                   ent_active(q), trustworthy(q)])
    q = Query(cat, "enterprise")
    add("E03", q, [
        q.exists("WL.agency", "{r}.licence_status = '有效'"),
        q.field("WL.deposit", "{q}.form = '现金'"),
        negate(q.field("WL.deposit", "{q}.court_frozen <> 0")),
        exactly(q.count("SC.penalty", cat.within("{r}.date", 3, "years") + " AND {r}.type <> '警告'"), 0),
        q.field("WL.deposit", "{q}.refund_outstanding = 0"),
    ])
    q = Query(cat, "enterprise")
    add("E04", q, [
        q.exists("GZ.lease", f"{{r}}.purpose = '经营' AND {{r}}.start <= {a} AND {{r}}.\"end\" > {a}"),
        small(q), ent_active(q),
    ])
    q = Query(cat, "enterprise")
    add("E05", q, [
        q.exists("KJ.hte", f"year({{r}}.cert_date) = {y} AND {{r}}.cert_type IN ('首次', '重新')"),
        q.field("SC.ent", "{q}.region >= 411400 AND {q}.region < 411500"),
        q.exists("SW.reg", "{r}.status = '正常'"),
        trustworthy(q),
    ])
    q = Query(cat, "enterprise")
    add("E06", q, [
        q.exists("KJ.tsme", f"{{r}}.year = {y - 1}"),
        q.exists("SW.cit_annual", f"{{r}}.year = {y - 1} AND {{r}}.rd_super_deduction > 0"),
    ])
    q = Query(cat, "enterprise")
    sales = q.fold("sum", "SW.vat_return", "sales", f"year({{r}}.period) = {y}")
    add("E07", q, [
        q.exists("GX.above_scale", f"{{r}}.year = {y}"),
        negate(q.exists("GX.above_scale", f"{{r}}.year < {y}")),
        lambda s: Cond(f"(({sales(s)[0]}) >= 20000000) IS TRUE", f"(({sales(s)[1]}) < 20000000) IS TRUE"),
        q.field("SC.ent", "{q}.industry_code >= 'C13' AND {q}.industry_code < 'C44'"),
    ])
    q = Query(cat, "enterprise")
    rel = person_rel(q)
    add("E08", q, [
        q.field("SC.ent", f"year({{q}}.est_date) = {y} AND {{q}}.type <> '个体工商户'"),
        q.any(rel["legal_rep"](), q.any(rel["represented"](), q.field(
            "SC.ent", "{q}.type = '个体工商户' AND {q}.status = '注销' AND "
            + cat.within("{q}.status_date", 1, "years")))),
        at_least(q.count("SW.vat_return", cat.within("{r}.period", 12, "months")), 6),
        at_least(q.rel_count(rel["employees"]()), 1),
    ])
    q = Query(cat, "person")
    represented = person_rel(q)["represented"]()
    add("E09", q, [
        both(exactly(q.rel_count(represented), 1),
             q.any(represented, q.field("SC.ent", "{q}.status IN ('存续', '在业') AND {q}.est_date <= "
                                        f"DATE '{shift(as_of, -12, 'months')}'"))),
        either(q.exists("JY.grad", cat.within("{r}.grad_date", 2, "years")), hardship_now(q),
               q.exists("NY.poverty_monitor")),
    ])
    q = Query(cat, "enterprise")
    add("E10", q, [
        at_least(q.rel_count(person_rel(q)["employees"](), both(
            hardship_now(q), q.exists("RS.hardship", cat.within("{r}.cert_date", 3, "years")))), 1),
        ent_active(q),
    ])

    # 惠招商
    q = Query(cat, "enterprise")
    add("I01", q, [
        q.exists("FG.project", "{r}.total_invest >= 30000000 AND " + cat.within("{r}.start", 3, "years")),
        q.exists("FG.project", "{r}.fa_invest_done > 0"),
        trustworthy(q),
    ])
    q = Query(cat, "enterprise")
    add("I02", q, [
        q.exists("FG.project", cat.within("{r}.commission_date", 2, "years")),
        q.exists("DL.account", "{r}.customer_type IN ('大工业', '一般工商业')"),
    ])

    # 惠金融
    running = f"{{r}}.start <= {a} AND {{r}}.\"end\" > {a}"
    q = Query(cat, "person")
    add("F01", q, [
        q.exists("JR.guaranteed_loan", running),
        negate(q.exists("JR.guaranteed_loan", "{r}.overdue_days > 0 AND " + running)),
        either(q.exists("JY.grad", cat.within("{r}.grad_date", 2, "years")), q.exists("RS.hardship"),
               q.exists("NY.poverty_monitor"), at_least(q.rel_count(person_rel(q)["represented"]()), 1)),
    ])
    q = Query(cat, "enterprise")
    add("F02", q, [
        q.exists("JR.guaranteed_loan", "{r}.first_loan <> 0 AND " + cat.within("{r}.start", 1, "years")),
        q.exists("JR.guaranteed_loan", "{r}.first_loan <> 0 AND {r}.\"end\" - {r}.start >= 180"),
        small(q),
    ])
    return out
