"""Catalogs of phrases to bias decoding towards, and their BPE encoding.

A catalog file holds one phrase per line, optionally followed by a TAB and the phrase's
per-token boost (a float >= 0, natural log); blank lines and lines starting with ``#`` are
skipped. Phrases are normalised with :func:`sltk.data.text_norm.normalize_text`, like the
transcripts (``Zoë's café`` -> ``ZOE'S CAFE``)::

    # contacts
    ANNA KARENINA
    Zoë's Café	3.0

``utt2catalog`` is a Kaldi-style table ``<utt-id> <catalog-file>`` giving each utterance
its own catalog; relative paths are read from the table's directory.

:func:`encode_catalog` turns phrases into BPE token ids with the lang directory's
sentencepiece model (the same encoding as :meth:`sltk.decode.lang.Lang.encode`): words
outside the vocabulary are spelled with sub-word or character pieces; pieces the model
cannot spell (``<unk>``) are dropped with a warning, and a phrase left with no tokens is
skipped. :func:`load_context_graph` does it all: file -> :class:`ContextGraph`.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from sltk.bias.context_graph import ContextGraph
from sltk.utils.errors import UserError
from sltk.utils.io import PathLike

log = logging.getLogger("sltk")

CatalogEntry = Tuple[str, Optional[float]]
EncodedEntry = Tuple[List[int], Optional[float]]


def read_catalog(path: PathLike) -> List[CatalogEntry]:
    """``(phrase, boost or None)`` per phrase line of a catalog file (see the module doc)."""
    from sltk.data.text_norm import normalize_text

    p = Path(path)
    if not p.is_file():
        raise UserError(f"catalog {p} does not exist")
    out: List[CatalogEntry] = []
    try:
        with open(p, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                parts = line.split("\t")
                if len(parts) > 2:
                    raise UserError(f"{p}:{lineno}: expected '<phrase>[TAB<boost>]', got {len(parts) - 1} TABs")
                boost: Optional[float] = None
                if len(parts) == 2 and parts[1].strip():
                    try:
                        boost = float(parts[1])
                    except ValueError:
                        raise UserError(f"{p}:{lineno}: boost {parts[1].strip()!r} is not a number") from None
                    if not math.isfinite(boost) or boost < 0:
                        raise UserError(f"{p}:{lineno}: boost must be a finite number >= 0, got {parts[1].strip()}")
                phrase = normalize_text(parts[0])
                if not phrase:
                    log.warning("%s:%d: phrase %r is empty after normalisation, skipped", p, lineno, parts[0])
                    continue
                out.append((phrase, boost))
    except UnicodeDecodeError:
        raise UserError(f"catalog {p} is not UTF-8 text") from None
    return out


def read_utt2catalog(path: PathLike) -> Dict[str, str]:
    """``utt-id -> catalog path`` from a Kaldi table; relative paths are resolved against
    the table's directory. Every listed catalog must exist."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"utt2catalog table {p} does not exist")
    out: Dict[str, str] = {}
    try:
        with open(p, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                parts = line.split(maxsplit=1)
                if not parts:
                    continue
                if len(parts) < 2 or not parts[1].strip():
                    raise UserError(f"{p}:{lineno}: expected '<utt-id> <catalog-file>', got {line.strip()!r}")
                utt, value = parts[0], parts[1].strip()
                if utt in out:
                    raise UserError(f"{p}:{lineno}: utterance {utt} is listed twice")
                cat = Path(value)
                if not cat.is_absolute():
                    cat = p.parent / cat
                if not cat.is_file():
                    raise UserError(f"{p}:{lineno}: catalog {cat} of utterance {utt} does not exist")
                out[utt] = str(cat)
    except UnicodeDecodeError:
        raise UserError(f"utt2catalog table {p} is not UTF-8 text") from None
    return out


def _sentencepiece(sp_model_or_lang):
    """A sentencepiece processor from a Lang, a processor, or a bpe.model path."""
    if hasattr(sp_model_or_lang, "sp") and hasattr(sp_model_or_lang, "token2id"):  # a Lang
        return sp_model_or_lang.sp
    if isinstance(sp_model_or_lang, (str, Path)):
        import sentencepiece as spm

        p = Path(sp_model_or_lang)
        if not p.is_file():
            raise UserError(f"BPE model {p} does not exist")
        sp = spm.SentencePieceProcessor()
        try:
            sp.load(str(p))
        except (OSError, RuntimeError) as e:
            raise UserError(f"{p} is not a sentencepiece model: {str(e).splitlines()[0]}") from None
        return sp
    if hasattr(sp_model_or_lang, "encode") and hasattr(sp_model_or_lang, "unk_id"):
        return sp_model_or_lang
    raise TypeError(f"expected a Lang, a SentencePieceProcessor or a bpe.model path, got {type(sp_model_or_lang)}")


def encode_catalog(phrases: Sequence[Union[CatalogEntry, str]], sp_model_or_lang,
                   source: str = "catalog") -> List[EncodedEntry]:
    """BPE token ids of each phrase: ``[(token_ids, boost)]``.

    Args:
      phrases: ``(phrase, boost)`` pairs as from :func:`read_catalog`, or plain strings.
      sp_model_or_lang: a :class:`~sltk.decode.lang.Lang`, a sentencepiece processor or the
        path of a ``bpe.model``.
      source: named in warnings.

    ``<unk>`` pieces (characters the model cannot spell) and the blank are dropped with a
    warning; a phrase left with no tokens but word boundaries (``\u2581``) is skipped with a
    warning. Never raises for a word outside the vocabulary.
    """
    sp = _sentencepiece(sp_model_or_lang)
    unk = sp.unk_id()
    out: List[EncodedEntry] = []
    for item in phrases:
        phrase, boost = (item, None) if isinstance(item, str) else item
        ids = [int(i) for i in sp.encode(phrase, out_type=int)]
        kept = [i for i in ids if i != unk and i > 0]
        if len(kept) != len(ids):
            log.warning("%s: phrase %r has characters the BPE model cannot spell; %d of its %d pieces dropped",
                        source, phrase, len(ids) - len(kept), len(ids))
        if not any(sp.id_to_piece(i).strip("\u2581") for i in kept):  # nothing but word boundaries
            log.warning("%s: phrase %r has no BPE tokens left, skipped", source, phrase)
            continue
        out.append((kept, boost))
    return out


def load_context_graph(path: PathLike, sp_model_or_lang, boost: float) -> ContextGraph:
    """Catalog file -> :class:`ContextGraph` (read, normalise, BPE-encode, build)."""
    return ContextGraph(encode_catalog(read_catalog(path), sp_model_or_lang, source=str(path)), boost)
