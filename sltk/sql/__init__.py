"""Text-to-SQL with N-best reranking (sql-rerank).

* :mod:`sltk.sql.data`: a synthetic Spider-style benchmark (SQLite databases of several
  domains, questions paired with SQL at every hardness level, values mentioned by prefixes,
  abbreviations and case variants; test databases unseen in training);
* :mod:`sltk.sql.db`: reading schemas and executing queries in SQLite;
* :mod:`sltk.sql.sqlparse`: SQL components (sqlglot): exact-set match, query plans, literals;
* :mod:`sltk.sql.metrics`: EM, EX, per hardness, N-best oracle;
* :mod:`sltk.sql.generator`: a copy-attention GRU seq2seq over question + schema with beam search;
* :mod:`sltk.sql.plan`: the query-plan model;
* :mod:`sltk.sql.linking`: schema/value linking and repair;
* :mod:`sltk.sql.rerank`: the combined reranking score.
"""
