"""Tokenization round trip; the generator learns a tiny task, copies an unseen value, resumes,
and beam search returns distinct candidates best first."""

import json

import pytest

from sltk.sql.generator import beam_search, load_model, train
from sltk.sql.tokens import detokenize, source, sql_tokens

from .conftest import SCHEMA


def test_tokens_round_trip():
    sql = "SELECT T1.name , count(*) FROM singer AS T1 WHERE T1.country = 'New York' AND age >= 3"
    toks = sql_tokens(sql)
    assert toks[:4] == ["SELECT", "T1", ".", "name"] and ["'", "New", "York", "'"] == toks[-8:-4]
    assert detokenize(toks) == "SELECT T1.name , count ( * ) FROM singer AS T1 WHERE T1.country = 'New York' AND age >= 3"
    src, segs = source("how many singers", {"singer": ["id", "name"]})
    assert src == ["how", "many", "singers", "<sep>", "singer", ":", "id", ",", "name"]
    assert segs == [0, 0, 0, 1, 2, 4, 3, 4, 3]


@pytest.mark.slow
def test_train_and_beam_search(tmp_path, hand_db):
    exs = []
    for c in ["France", "Peru", "Chile", "Japan", "Kenya", "Spain"]:
        exs.append({"db": "concerts", "question": f"singers from {c}",
                    "query": f"SELECT name FROM singer WHERE country = '{c}'"})
        exs.append({"db": "concerts", "question": f"how many singers are from {c}",
                    "query": f"SELECT count(*) FROM singer WHERE country = '{c}'"})
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(e) + "\n" for e in exs))
    path = train(tmp_path / "train.jsonl", hand_db, tmp_path / "gen", epochs=30, batch_size=12, lr=1e-2)
    assert (tmp_path / "gen" / "epoch-30.pt").is_file()
    m, ck = load_model(path)
    assert ck["epoch"] == 30
    out = beam_search(m, "singers from Brazil", SCHEMA, beam=5, nbest=5)
    sqls = [s for s, _ in out]
    assert sqls[0] == "SELECT name FROM singer WHERE country = 'Brazil'"   # copied, never seen in training
    assert len(set(sqls)) == len(sqls) and [s for _, s in out] == sorted([s for _, s in out], reverse=True)
    # resume: nothing left to do, the checkpoint is not retrained
    mtime = (tmp_path / "gen" / "epoch-30.pt").stat().st_mtime
    train(tmp_path / "train.jsonl", hand_db, tmp_path / "gen", epochs=30, batch_size=12, lr=1e-2)
    assert (tmp_path / "gen" / "epoch-30.pt").stat().st_mtime == mtime
