"""Schema and value linking, and repair of a candidate's literal values.

A string literal that a candidate compares with a column should be one of that column's
values in the database, mentioned by the question. A question often names a value another
way: another case ("rock"), a plural ("lions"), a prefix ("Cal" for "California"), initials
("L" for "Left", "NY" for "New York") or an abbreviation (letters in order: "Clfn"). For a
literal that is not a value of its column, :func:`link_value` looks for the values of the
column that the literal, or a word group of the question, names in one of those ways;
the best kind of match wins (exact > case > plural > prefix > initials > abbreviation), and
a unique winner replaces the literal (the repair). A literal that names no value and is
not itself words of the question (the model copied the wrong words) is linked through the
question's word groups instead. A literal with no link, or with several
equally good ones, stays and counts as unlinked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from sltk.sql import db as dbmod
from sltk.sql.sqlparse import ParseError, resolve_column, string_literals
from sltk.sql.tokens import question_tokens

KINDS = ("exact", "case", "plural", "prefix", "initials", "abbreviation")


def _initials(v: str) -> str:
    words = v.split()
    return "".join(w[0] for w in words).lower() if len(words) > 1 else v[:1].lower()


def _is_subsequence(short: str, long: str) -> bool:
    it = iter(long)
    return all(ch in it for ch in short)


def match_kind(mention: str, value: str) -> Optional[str]:
    """How ``mention`` names ``value`` (one of :data:`KINDS`), or None."""
    if mention == value:
        return "exact"
    m, v = mention.lower().strip(), value.lower().strip()
    if not m or not v:
        return None
    if m == v:
        return "case"
    if " " not in v and (m in (v + "s", v + "es") or (m.endswith("ies") and m[:-3] + "y" == v)):
        return "plural"
    if len(m) >= 2 and v.startswith(m) and (len(m) >= 3 or " " in v and v.split()[0] == m):
        return "prefix"
    if " " not in m and m == _initials(value):
        return "initials"
    if len(m) >= 2 and " " not in m and m[0] == v[0] and _is_subsequence(m[1:], v[1:].replace(" ", "")):
        return "abbreviation"
    return None


def best_links(mention: str, values: Sequence[str]) -> Tuple[Optional[str], List[str]]:
    """The best kind by which ``mention`` names any of ``values``, and the values it names so."""
    best, found = None, []
    for v in values:
        k = match_kind(mention, v)
        if k is None:
            continue
        if best is None or KINDS.index(k) < KINDS.index(best):
            best, found = k, [v]
        elif k == best:
            found.append(v)
    return best, found


def _ngrams(question: str, n_max: int = 3) -> List[str]:
    toks = [t for t in question_tokens(question) if re.match(r"\w", t)]
    return [" ".join(toks[i: i + n]) for n in range(1, n_max + 1) for i in range(len(toks) - n + 1)]


@dataclass
class Link:
    literal: str
    column: Optional[str]
    value: Optional[str]      # the database value it links to (None: no unique link)
    kind: Optional[str]       # exact, case, ... or None


def link_value(literal: str, values: Sequence[str], question: str) -> Link:
    """Link one literal to one of a column's ``values`` through ``question``."""
    if literal in values:
        return Link(literal, None, literal, "exact")
    kind, found = best_links(literal, values)
    if kind is not None and len(found) == 1:
        return Link(literal, None, found[0], kind)
    # the literal names nothing, and is not what the question says: a word group of the
    # question may name a value (the model copied the wrong words, or too few of them)
    grams = _ngrams(question)
    if kind is None and literal.lower() not in {g.lower() for g in grams}:
        best, cand = None, set()
        for g in grams:
            k, f = best_links(g, values)
            if k is None or k == "abbreviation":
                continue
            if best is None or KINDS.index(k) < KINDS.index(best):
                best, cand = k, set(f)
            elif k == best:
                cand |= set(f)
        if best is not None and len(cand) == 1:
            return Link(literal, None, cand.pop(), best)
    return Link(literal, None, None, None)


def link_candidate(sql: str, question: str, db_file) -> Tuple[str, List[Link]]:
    """The candidate with each string literal replaced by its linked value, and the links.
    A candidate that does not parse comes back unchanged with no links."""
    try:
        lits = string_literals(sql)
    except (ParseError, RecursionError):
        return sql, []
    sch = dbmod.schema(str(db_file))
    vals = dbmod.text_values(str(db_file))
    all_text = sorted({v for vs in vals.values() for v in vs})
    links = []
    fixed = sql
    for lit, col in lits:
        values: Sequence[str] = all_text
        if col is not None:
            try:
                cols = resolve_column(sql, col, sch)
            except (ParseError, RecursionError):
                cols = []
            if cols:
                values = sorted({v for c in cols for v in vals.get(c, ())})
        ln = link_value(lit, values, question)
        ln.column = col
        links.append(ln)
        if ln.value is not None and ln.value != lit:
            fixed = fixed.replace("'" + lit + "'", "'" + ln.value.replace("'", "''") + "'")
    return fixed, links
