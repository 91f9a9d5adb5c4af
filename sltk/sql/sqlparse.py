"""SQL structure through a real parser (sqlglot, SQLite dialect).

* :func:`components`: a query as Spider's exact-set-match components, values ignored: the
  SELECT list, FROM tables and join conditions, WHERE and HAVING conditions (as sets),
  AND/OR connectors, GROUP BY (a set), ORDER BY (with direction), LIMIT (presence only),
  nested queries and INTERSECT/UNION/EXCEPT (recursively). Table aliases are resolved
  (``T1.name`` is ``singer.name``), unqualified columns are resolved through the schema.
* :func:`hardness`: Spider's easy/medium/hard/extra rule.
* :func:`plan`: the query plan (which clauses a query has), the labels of the plan model.
* :func:`string_literals`: the string values a query compares columns with.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Dict, List, Optional, Tuple

import sqlglot
from sqlglot import exp

PLAN_FIELDS = ("where", "group", "having", "order", "limit", "join", "nested", "setop")
PLAN_SIZES = {"where": 2, "group": 2, "having": 2, "order": 2, "limit": 2, "join": 3, "nested": 2, "setop": 4}
SETOPS = ("none", "union", "intersect", "except")
HARDNESS = ("easy", "medium", "hard", "extra")


class ParseError(Exception):
    """SQL that sqlglot cannot parse (or that is not a query)."""


def parse(sql: str) -> exp.Expression:
    """The sqlglot tree of a query (cached: callers must not modify it)."""
    return _parse(sql)


@lru_cache(maxsize=20000)
def _parse(sql: str) -> exp.Expression:
    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
    except Exception as e:  # sqlglot raises ParseError, TokenError, and sometimes others
        raise ParseError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    if not isinstance(tree, (exp.Select, exp.SetOperation)):
        raise ParseError(f"not a query: {type(tree).__name__}")
    return tree


def _setop_name(node) -> Optional[str]:
    for name, cls in (("union", exp.Union), ("intersect", exp.Intersect), ("except", exp.Except)):
        if isinstance(node, cls):
            return name
    return None


class _Scope:
    def __init__(self, sel: exp.Select, schema: Optional[Dict[str, List[str]]], outer: Optional["_Scope"] = None):
        self.alias: Dict[str, str] = {}
        self.tables: List[str] = []
        self.outer = outer
        self.schema = {t.lower(): [c.lower() for c in cs] for t, cs in (schema or {}).items()}
        froms = []
        f = sel.args.get("from_") or sel.args.get("from")
        if f is not None:
            froms.append(f.this)
        for j in sel.args.get("joins") or []:
            froms.append(j.this)
        for t in froms:
            if isinstance(t, exp.Table):
                name = t.name.lower()
                self.tables.append(name)
                self.alias[name] = name
                if t.alias:
                    self.alias[t.alias.lower()] = name

    def column(self, col: exp.Column) -> str:
        name = col.name.lower()
        if col.table:
            q = col.table.lower()
            s: Optional[_Scope] = self
            while s is not None:
                if q in s.alias:
                    return f"{s.alias[q]}.{name}"
                s = s.outer
            return f"{q}.{name}"
        s = self
        while s is not None:
            owners = [t for t in s.tables if name in s.schema.get(t, [])]
            if len(owners) == 1:
                return f"{owners[0]}.{name}"
            if len(s.tables) == 1 and not s.schema:
                return f"{s.tables[0]}.{name}"
            if owners:
                return f"?.{name}"
            s = s.outer
        return f"{self.tables[0]}.{name}" if len(self.tables) == 1 else f"?.{name}"


def _canon(node, scope: _Scope, schema) -> str:
    if node is None:
        return ""
    if isinstance(node, exp.Column):
        if isinstance(node.this, exp.Star):
            return "*"
        return scope.column(node)
    if isinstance(node, exp.Literal) or isinstance(node, exp.Null) or isinstance(node, exp.Boolean):
        return "VALUE"
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal):
        return "VALUE"
    if isinstance(node, exp.Star):
        return "*"
    if isinstance(node, (exp.Alias, exp.Paren)):
        return _canon(node.this, scope, schema)
    if isinstance(node, exp.Subquery):
        return _canon(node.this, scope, schema)
    if isinstance(node, (exp.Select, exp.SetOperation)):
        return "(" + repr(_components(node, schema, scope)) + ")"
    if isinstance(node, exp.Ordered):
        return f"{_canon(node.this, scope, schema)} {'desc' if node.args.get('desc') else 'asc'}"
    parts = [_canon(c, scope, schema) for c in node.iter_expressions()]
    if isinstance(node, exp.Func) and not isinstance(node, exp.Anonymous):
        key = node.key
    elif isinstance(node, exp.Anonymous):
        key = str(node.this).lower()
    else:
        key = node.key
    return f"{key}({','.join(parts)})"


def _conds(node) -> Tuple[List, List[str]]:
    """Flatten AND/OR into (atoms, connectors)."""
    if isinstance(node, exp.Paren) and isinstance(node.this, (exp.And, exp.Or)):
        return _conds(node.this)
    if isinstance(node, (exp.And, exp.Or)):
        a, ca = _conds(node.left)
        b, cb = _conds(node.right)
        return a + b, ca + cb + [node.key]
    return [node], []


def _components(tree, schema, outer: Optional[_Scope] = None) -> tuple:
    op = _setop_name(tree)
    if op is not None:
        return ("setop", op, bool(tree.args.get("distinct", True)),
                _components(tree.left, schema, outer), _components(tree.right, schema, outer))
    if isinstance(tree, exp.Subquery):
        return _components(tree.this, schema, outer)
    if not isinstance(tree, exp.Select):
        raise ParseError(f"not a query: {type(tree).__name__}")
    sc = _Scope(tree, schema, outer)
    c = lambda n: _canon(n, sc, schema)  # noqa: E731
    select = tuple(sorted(c(e) for e in tree.expressions))
    distinct = tree.args.get("distinct") is not None
    froms = []
    f = tree.args.get("from_") or tree.args.get("from")
    if f is not None:
        froms.append(f.this)
    joins = tree.args.get("joins") or []
    join_conds = []
    for j in joins:
        froms.append(j.this)
        on = j.args.get("on")
        if on is not None:
            atoms, _ = _conds(on)
            for a in atoms:
                if isinstance(a, exp.EQ):
                    join_conds.append("eq(" + ",".join(sorted([c(a.left), c(a.right)])) + ")")
                else:
                    join_conds.append(c(a))
    tables = tuple(sorted(t.name.lower() if isinstance(t, exp.Table) else c(t) for t in froms))
    where = tree.args.get("where")
    having = tree.args.get("having")
    w_atoms, w_conn = _conds(where.this) if where is not None else ([], [])
    h_atoms, h_conn = _conds(having.this) if having is not None else ([], [])
    group = tree.args.get("group")
    order = tree.args.get("order")
    return ("select",
            ("select", distinct, select),
            ("from", tables, tuple(sorted(join_conds))),
            ("where", tuple(sorted(c(a) for a in w_atoms))),
            ("having", tuple(sorted(c(a) for a in h_atoms))),
            ("andor", tuple(sorted(set(w_conn + h_conn)))),
            ("group", tuple(sorted({c(g) for g in group.expressions})) if group is not None else ()),
            ("order", tuple(c(o) for o in order.expressions) if order is not None else ()),
            ("limit", tree.args.get("limit") is not None))


def components(sql: str, schema: Optional[Dict[str, List[str]]] = None) -> tuple:
    """The exact-set-match components of ``sql`` (a hashable nested tuple); raises ParseError."""
    key = tuple((t, tuple(c)) for t, c in schema.items()) if schema else ()
    return _components_cached(sql, key)


@lru_cache(maxsize=20000)
def _components_cached(sql: str, schema_key: tuple) -> tuple:
    return _components(parse(sql), {t: list(c) for t, c in schema_key} or None)


def exact_match(pred: str, gold: str, schema: Optional[Dict[str, List[str]]] = None) -> bool:
    """Spider's exact-set match (values ignored); a prediction that does not parse is wrong."""
    try:
        g = components(gold, schema)
    except ParseError as e:
        raise ValueError(f"gold query does not parse: {gold}: {e}") from None
    try:
        return components(pred, schema) == g
    except (ParseError, RecursionError):
        return False


# ---- hardness (Spider's rule)

def _selects(tree) -> List[exp.Select]:
    op = _setop_name(tree)
    if op is not None:
        return _selects(tree.left) + _selects(tree.right)
    return [tree]


def _nested(sel: exp.Select) -> int:
    n = 0
    for sub in sel.find_all(exp.Select):
        if sub is not sel:
            n += 1
    return n


def hardness(sql: str) -> str:
    tree = parse(sql)
    op = _setop_name(tree)
    main = _selects(tree)[0]
    comp2 = (1 if op else 0) + _nested(main)
    comp1 = 0
    where = main.args.get("where")
    if where is not None:
        comp1 += 1
    if main.args.get("group") is not None:
        comp1 += 1
    if main.args.get("order") is not None:
        comp1 += 1
    if main.args.get("limit") is not None:
        comp1 += 1
    comp1 += len(main.args.get("joins") or [])
    conds = []
    for key in ("where", "having"):
        node = main.args.get(key)
        if node is not None:
            atoms, conn = _conds(node.this)
            comp1 += conn.count("or")
            comp1 += sum(isinstance(a, exp.Like) for a in atoms)
            if key == "where":
                conds = atoms
    others = 0
    aggs = [a for a in main.find_all(exp.AggFunc) if a.find_ancestor(exp.Select) is main]
    if len(aggs) > 1:
        others += 1
    if len(main.expressions) > 1:
        others += 1
    if len(conds) > 1:
        others += 1
    g = main.args.get("group")
    if g is not None and len(g.expressions) > 1:
        others += 1
    if comp1 <= 1 and others == 0 and comp2 == 0:
        return "easy"
    if (others <= 2 and comp1 <= 1 and comp2 == 0) or (comp1 <= 2 and others < 2 and comp2 == 0):
        return "medium"
    if ((others > 2 and comp1 <= 2 and comp2 == 0) or (2 < comp1 <= 3 and others <= 2 and comp2 == 0)
            or (comp1 <= 1 and others == 0 and comp2 <= 1)):
        return "hard"
    return "extra"


# ---- query plan

def plan(sql: str) -> Dict[str, int]:
    """The clauses of a query: where, group, having, order, limit (0/1, anywhere in the main
    query or its set-operation parts), join (joins of the first SELECT: 0, 1, 2+), nested (a
    subquery in a condition or FROM), setop (0 none, 1 union, 2 intersect, 3 except)."""
    tree = parse(sql)
    sels = _selects(tree)
    op = _setop_name(tree)
    out = {k: int(any(s.args.get(k) is not None for s in sels)) for k in ("where", "group", "having", "order", "limit")}
    out["join"] = min(2, len(sels[0].args.get("joins") or []))
    out["nested"] = int(any(_nested(s) > 0 for s in sels))
    out["setop"] = SETOPS.index(op) if op else 0
    return out


# ---- literals

def string_literals(sql: str) -> List[Tuple[str, Optional[str]]]:
    """(value, column) for each string literal compared with a column (=, !=, LIKE, IN);
    column is ``table_or_alias.column`` or the bare column name, None when not next to one."""
    tree = parse(sql)
    out = []
    for lit in tree.find_all(exp.Literal):
        if not lit.is_string:
            continue
        parent = lit.parent
        if isinstance(parent, exp.Tuple):  # IN ('a', 'b')
            parent = parent.parent
        col = None
        if isinstance(parent, (exp.EQ, exp.NEQ, exp.Like, exp.ILike, exp.In, exp.GT, exp.LT, exp.GTE, exp.LTE)):
            other = parent.this if parent.this is not lit else parent.args.get("expression")
            if isinstance(other, exp.Column):
                col = f"{other.table.lower()}.{other.name.lower()}" if other.table else other.name.lower()
        out.append((lit.this, col))
    return out


def resolve_column(sql: str, col: str, schema: Dict[str, List[str]]) -> List[Tuple[str, str]]:
    """The (table, column) pairs that a column reference of :func:`string_literals` can mean."""
    tree = parse(sql)
    name = col.split(".")[-1]
    qual = col.split(".")[0] if "." in col else None
    aliases: Dict[str, str] = {}
    for t in tree.find_all(exp.Table):
        aliases[t.name.lower()] = t.name.lower()
        if t.alias:
            aliases[t.alias.lower()] = t.name.lower()
    if qual is not None and qual in aliases:
        return [(aliases[qual], name)] if name in schema.get(aliases[qual], []) else []
    used = set(aliases.values())
    return [(t, name) for t in schema if name in schema[t] and t in used]
