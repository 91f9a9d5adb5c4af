"""Tokenization of questions, serialized schemas and SQL (and back)."""

from __future__ import annotations

import re
from typing import Dict, List, Tuple

_Q = re.compile(r"[A-Za-z0-9_]+|[^\sA-Za-z0-9_]")
_SQL = re.compile(r"'[^']*'|\"[^\"]*\"|[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?|>=|<=|!=|<>|[^\s]")

QUOTE = "'"
SEP = "<sep>"
# segment ids of source tokens
SEG_Q, SEG_SEP, SEG_TABLE, SEG_COL, SEG_PUNCT = range(5)


def question_tokens(q: str) -> List[str]:
    return _Q.findall(q)


def source(question: str, schema: Dict[str, List[str]]) -> Tuple[List[str], List[int]]:
    """Tokens and segment ids of ``question <sep> table : col , col | table : ...``."""
    toks = question_tokens(question)
    segs = [SEG_Q] * len(toks)
    toks.append(SEP)
    segs.append(SEG_SEP)
    for i, (t, cols) in enumerate(schema.items()):
        if i:
            toks.append("|")
            segs.append(SEG_PUNCT)
        toks += [t, ":"]
        segs += [SEG_TABLE, SEG_PUNCT]
        for j, c in enumerate(cols):
            if j:
                toks.append(",")
                segs.append(SEG_PUNCT)
            toks.append(c)
            segs.append(SEG_COL)
    return toks, segs


def sql_tokens(sql: str) -> List[str]:
    """``SELECT T1.name FROM t AS T1 WHERE x = 'New York'`` ->
    SELECT T1 . name FROM t AS T1 WHERE x = ' New York '."""
    out = []
    for t in _SQL.findall(sql):
        if t[0] in "'\"" and len(t) >= 2:
            out.append(QUOTE)
            out += t[1:-1].split()
            out.append(QUOTE)
        else:
            out.append(t)
    return out


def detokenize(tokens: List[str]) -> str:
    """The inverse of :func:`sql_tokens` (up to white space)."""
    out: List[str] = []
    lit: List[str] = []
    in_lit = False
    glue = False
    for t in tokens:
        if t == QUOTE:
            if in_lit:
                out.append("'" + " ".join(lit) + "'")
                lit = []
            in_lit = not in_lit
            continue
        if in_lit:
            lit.append(t)
            continue
        if t == ".":
            glue = True
            if out:
                out[-1] += "."
            else:
                out.append(".")
            continue
        if glue and out:
            out[-1] += t
        else:
            out.append(t)
        glue = False
    if in_lit:
        out.append("'" + " ".join(lit))
    return " ".join(out)
