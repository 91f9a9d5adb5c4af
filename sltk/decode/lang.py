"""The lang directory: BPE tokens, words, lexicon, and the k2 graphs H, L, G and HLG.

Layout of a lang directory written by :func:`prepare_lang` (program ``prepare-lang``)::

    bpe.model               sentencepiece BPE model; <blk>=0, <sos/eos>=1, <unk>=2
    tokens.txt              "<piece> <id>": the model's pieces, then #0, #1, ... (disambiguation)
    words.txt               "<word> <id>": <eps> 0, the words (C-locale sorted), #0, <s>, </s>
    lexicon.txt             "<word> <piece> ...": each word's BPE pieces
    lexicon_disambig.txt    the same with #1, #2, ... appended where a word's pieces are a
                            prefix of, or equal to, another word's pieces
    H.pt                    CTC topology over token ids 0..vocab_size-1 (k2.ctc_topo)
    L.pt, L_disambig.pt     lexicon FST (labels: token ids, aux_labels: word ids); the second
                            with disambiguation tokens and a #0:#0 self-loop for G's backoff
    lm_<N>gram.arpa         word N-gram LM (interpolated Kneser-Ney), when --lm-order N > 0
    G_<N>gram.pt            the LM as a k2 acceptor over word ids, backoff arcs on #0
    HLG.pt                  H o det(L o G), disambiguation symbols and epsilons removed
    lang.json               the settings and sizes; written last (marks the directory done)

An **open-vocabulary** lang directory (``--open-vocab``) has the word ``<unk>`` (before ``#0``
in words.txt), pronounced ``#unk`` (the last symbol of tokens.txt) in L_disambig, and an LM
trained on the transcripts plus a copy of them with the words seen once replaced by
``<unk>`` (Good-Turing: the singletons stand for the unseen words, in the contexts where new
words occur). In HLG (and the LG of fast_beam_LG) each ``#unk`` arc of the determinized LG is
replaced by a token loop that spells any word: a word-initial piece (``▁...``), then any
number of continuation pieces, each piece adding ``unk_penalty`` (:func:`graphs.expand_unk`).
They output words outside the lexicon: the decoders read the text of such a graph's path from
its tokens, not its words.

Graphs are saved with ``torch.save(fsa.as_dict())``; load them with :meth:`Lang.graph`.
Only the graph code needs k2; everything else here works without it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from sltk.utils.errors import UserError
from sltk.utils.io import PathLike, atomic_open, atomic_path

log = logging.getLogger("sltk")

BLANK, SOS_EOS, UNK = "<blk>", "<sos/eos>", "<unk>"
EPS = "<eps>"
UNK_TOKEN = "#unk"  # the pronunciation of <unk> in an open-vocabulary L_disambig
_DISAMBIG = re.compile(r"^#\d+$")
_SPECIAL_WORDS = {"<s>", "</s>"}
LANG_FORMAT = 1


# ------------------------------------------------------------------------------ tables
def read_symbols(path: PathLike) -> Dict[str, int]:
    """A symbol table file (``<symbol> <id>`` per line) as a dict."""
    out: Dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise UserError(f"{path}:{lineno}: expected '<symbol> <id>', got {line.strip()!r}")
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                raise UserError(f"{path}:{lineno}: id {parts[1]!r} is not an integer") from None
    return out


def write_symbols(path: PathLike, symbols: Sequence[str]) -> None:
    """Write ``<symbol> <index>`` lines atomically (ids are list positions)."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        for i, s in enumerate(symbols):
            f.write(f"{s} {i}\n")


def read_lexicon(path: PathLike) -> List[Tuple[str, List[str]]]:
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise UserError(f"{path}:{lineno}: word {parts[0]!r} has no tokens")
            out.append((parts[0], parts[1:]))
    return out


def write_lexicon(path: PathLike, lexicon: Iterable[Tuple[str, Sequence[str]]]) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        for w, toks in lexicon:
            f.write(f"{w} {' '.join(toks)}\n")


def add_disambig_symbols(lexicon: Sequence[Tuple[str, Sequence[str]]]) -> Tuple[List[Tuple[str, List[str]]], int]:
    """Append ``#1``, ``#2``, ... to token sequences that are a proper prefix of another
    word's sequence or shared by several words (Kaldi's add_lex_disambig.pl).

    Returns the new lexicon and the largest disambiguation index used (0 if none).
    """
    count: Dict[Tuple[str, ...], int] = {}
    for _, toks in lexicon:
        t = tuple(toks)
        count[t] = count.get(t, 0) + 1
    prefixes = set()
    for t in count:
        for i in range(1, len(t)):
            prefixes.add(t[:i])
    last: Dict[Tuple[str, ...], int] = {}
    max_disambig = 0
    out = []
    for w, toks in lexicon:
        t = tuple(toks)
        if t in prefixes or count[t] > 1:
            last[t] = last.get(t, 0) + 1
            max_disambig = max(max_disambig, last[t])
            out.append((w, list(t) + [f"#{last[t]}"]))
        else:
            out.append((w, list(t)))
    return out, max_disambig


def k2_available() -> bool:
    """Whether k2 imports (it is absent on torch 2.x installs)."""
    try:
        import k2  # noqa: F401
    except Exception:  # ImportError, or k2's own check of the torch version
        return False
    return True


def c_sorted(items: Iterable[str]) -> List[str]:
    return sorted(items, key=lambda s: s.encode("utf-8"))


# ------------------------------------------------------------------------------ input text
def read_transcripts(path: PathLike, kaldi_text: Optional[bool] = None) -> List[List[str]]:
    """Tokenised transcripts from a data directory (its ``text``), a Kaldi ``text`` table
    (``kaldi_text=True``, or a file named ``text``), or a plain file of one sentence a line.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "text"
        if not p.is_file():
            raise UserError(f"data directory {path} has no text file")
        kaldi_text = True
    elif not p.is_file():
        raise UserError(f"text file {p} does not exist")
    if kaldi_text is None:
        kaldi_text = p.name == "text"
    out = []
    try:
        with open(p, encoding="utf-8") as f:
            for line in f:
                words = line.split()
                if kaldi_text:
                    words = words[1:]
                if words:
                    out.append(words)
    except UnicodeDecodeError:
        raise UserError(f"{p} is not UTF-8 text") from None
    return out


def _check_words(sentences: List[List[str]], source: str) -> List[List[str]]:
    bad = set()
    dropped = 0
    out = []
    for words in sentences:
        kept = []
        for w in words:
            if w in _SPECIAL_WORDS:
                dropped += 1
                continue
            if w == EPS or _DISAMBIG.match(w):
                bad.add(w)
            kept.append(w)
        if kept:
            out.append(kept)
    if bad:
        raise UserError(f"{source}: reserved symbols used as words: {' '.join(c_sorted(bad))}")
    if dropped:
        log.warning("%s: dropped %d occurrences of <s> / </s> from the transcripts", source, dropped)
    return out


# ------------------------------------------------------------------------------ Lang
@dataclass
class Lang:
    """A prepared lang directory (see the module doc).

    Fields: ``dir``; ``token2id``/``id2token`` (tokens.txt, disambiguation symbols included);
    ``word2id``/``id2word`` (words.txt); ``lexicon`` (word -> pieces); ``config`` (lang.json).
    """

    dir: Path
    token2id: Dict[str, int]
    id2token: Dict[int, str]
    word2id: Dict[str, int]
    id2word: Dict[int, str]
    lexicon: Dict[str, List[str]]
    config: dict = field(default_factory=dict)

    blank_id = 0
    sos_eos_id = 1
    unk_id = 2

    @property
    def vocab_size(self) -> int:
        """Number of model output tokens (BPE pieces incl. <blk>; disambiguation excluded)."""
        return self.sp.get_piece_size()

    @property
    def lm_order(self) -> int:
        return int(self.config.get("lm_order", 0))

    @property
    def open_vocab(self) -> bool:
        """Whether HLG and LG spell ``<unk>`` with tokens (see the module doc)."""
        return bool(self.config.get("settings", {}).get("open_vocab", False))

    def unk_spelling(self):
        """The :class:`graphs.UnkSpelling` of an open-vocabulary lang, else None."""
        if not self.open_vocab:
            return None
        pieces = [self.sp.id_to_piece(i) for i in range(self.vocab_size)]
        return _unk_spelling(pieces, self.token2id, self.config["settings"]["unk_penalty"])

    @cached_property
    def sp(self):
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor()
        sp.load(str(self.dir / "bpe.model"))
        return sp

    def encode(self, text: str) -> List[int]:
        """Token ids of a transcript."""
        return self.sp.encode(text, out_type=int)

    def tokens_to_text(self, ids: Sequence[int]) -> str:
        """Text of token ids (blank and ids beyond the vocabulary dropped)."""
        v = self.vocab_size
        return self.sp.decode([int(i) for i in ids if 0 < int(i) < v])

    def words_to_text(self, ids: Sequence[int]) -> str:
        """Text of word ids (epsilon and disambiguation / sentence symbols dropped)."""
        first = self.word2id.get("#0", len(self.word2id))
        return " ".join(self.id2word[int(i)] for i in ids if 0 < int(i) < first)

    def graph_path(self, name: str) -> Path:
        """``H``, ``L``, ``L_disambig``, ``G`` or ``HLG`` -> the file in this directory."""
        if name == "G":
            return self.dir / f"G_{self.lm_order}gram.pt"
        return self.dir / f"{name}.pt"

    def has_graph(self, name: str) -> bool:
        return self.graph_path(name).is_file()

    def graph(self, name: str, device=None):
        """Load a k2 graph (needs k2); ``name`` as in :meth:`graph_path`."""
        p = self.graph_path(name)
        if not p.is_file():
            why = ""
            if not self.config.get("graphs", True):
                why = " (prepared without k2 graphs)"
            elif name in ("G", "HLG") and self.lm_order == 0:
                why = " (prepared with --lm-order 0)"
            raise UserError(f"lang directory {self.dir} has no {p.name}{why}")
        from sltk.decode.graphs import load_fsa

        return load_fsa(p, device)


def load_lang(lang_dir: PathLike) -> Lang:
    """Read a lang directory written by :func:`prepare_lang`."""
    d = Path(lang_dir)
    if not (d / "lang.json").is_file():
        raise UserError(f"{d} is not a prepared lang directory (no lang.json); run prepare-lang")
    for f in ("tokens.txt", "words.txt", "lexicon.txt", "bpe.model"):
        if not (d / f).is_file():
            raise UserError(f"lang directory {d} has no {f}")
    config = json.loads((d / "lang.json").read_text(encoding="utf-8"))
    token2id = read_symbols(d / "tokens.txt")
    word2id = read_symbols(d / "words.txt")
    return Lang(
        dir=d,
        token2id=token2id,
        id2token={i: t for t, i in token2id.items()},
        word2id=word2id,
        id2word={i: w for w, i in word2id.items()},
        lexicon=dict(read_lexicon(d / "lexicon.txt")),
        config=config,
    )


# ------------------------------------------------------------------------------ prepare
def _sha1_file(path: PathLike) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _sha1_sentences(sentences: List[List[str]]) -> str:
    h = hashlib.sha1()
    for s in sentences:
        h.update(" ".join(s).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def _unk_spelling(pieces: Sequence[str], token2id: Dict[str, int], penalty: float):
    from sltk.decode.graphs import UnkSpelling

    real = [(i, p) for i, p in enumerate(pieces) if i > 2]  # not <blk>, <sos/eos>, <unk>
    return UnkSpelling(token2id[UNK_TOKEN], [i for i, p in real if p.startswith("\u2581")],
                       [i for i, p in real if not p.startswith("\u2581")], penalty)


def _with_unk_copy(sentences: List[List[str]]) -> List[List[str]]:
    """The sentences, then a copy of those with a word seen once, that word replaced by ``<unk>``:
    an LM trained on both gives ``<unk>`` the probability of a new word where new words occur
    (the slots of a command, names) and leaves the other n-grams' estimates nearly unchanged."""
    from collections import Counter

    counts = Counter(w for s in sentences for w in s)
    copy = [[UNK if counts[w] == 1 else w for w in s] for s in sentences]
    copy = [s for s in copy if UNK in s]
    if not copy:
        log.warning("no word occurs once in the transcripts: <unk> gets no LM probability")
    log.info("open vocabulary: %d sentences with a word seen once join the LM text with it as <unk>", len(copy))
    return list(sentences) + copy


def train_bpe(sentences: List[List[str]], vocab_size: int) -> bytes:
    """A sentencepiece BPE model (serialized) with <blk>=0, <sos/eos>=1, <unk>=2.

    Deterministic (one thread). If the text is too small for ``vocab_size`` pieces, the
    model gets as many as the text allows (sentencepiece's soft vocabulary limit).
    """
    import io

    import sentencepiece as spm

    if vocab_size < 4:
        raise UserError(f"--vocab-size must be at least 4, got {vocab_size}")
    writer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter([" ".join(s) for s in sentences]),
            model_writer=writer,
            model_type="bpe",
            vocab_size=vocab_size,
            hard_vocab_limit=False,
            character_coverage=1.0,
            user_defined_symbols=[BLANK, SOS_EOS],
            unk_id=2,
            bos_id=-1,
            eos_id=-1,
            num_threads=1,
            input_sentence_size=0,
            minloglevel=2,
        )
    except RuntimeError as e:
        raise UserError(f"sentencepiece could not train a BPE model: {str(e).splitlines()[0]}") from None
    return writer.getvalue()


_OUTPUTS = ["bpe.model", "tokens.txt", "words.txt", "lexicon.txt", "lexicon_disambig.txt",
            "H.pt", "L.pt", "L_disambig.pt", "HLG.pt", "lang.json"]


def prepare_lang(
    texts: Sequence[PathLike],
    lang_dir: PathLike,
    vocab_size: int = 500,
    lm_order: int = 3,
    modified_ctc_topo: bool = False,
    bpe_model: Optional[PathLike] = None,
    arpa: Optional[PathLike] = None,
    kaldi_text: Optional[bool] = None,
    overwrite: bool = False,
    graphs: Optional[bool] = None,
    open_vocab: bool = False,
    unk_penalty: float = -6.0,
) -> Lang:
    """Write a lang directory (see the module doc) from training transcripts.

    Args:
      texts: data directories, Kaldi ``text`` files, or plain text files (one sentence a line).
      vocab_size: BPE vocabulary size (including <blk>, <sos/eos>, <unk>).
      lm_order: order of the word n-gram LM trained on ``texts`` (0: no LM, G nor HLG).
      modified_ctc_topo: build H with k2's modified CTC topology.
      bpe_model: use this sentencepiece model instead of training one.
      arpa: use this ARPA LM instead of training one (its words join the vocabulary).
      kaldi_text: whether text files start with an utterance id (default: only files named
        ``text``; data directories always).
      overwrite: redo everything even if the outputs exist.
      graphs: build the k2 graphs (H, L, G, HLG); default: when k2 can be imported. Without
        them the directory still has the BPE model, tables, lexicon and ARPA LM.
      open_vocab: an open-vocabulary lexicon and LM (``<unk>`` spelled by tokens; module doc).
      unk_penalty: log score (<= 0) added per token of a spelled ``<unk>`` word (at 0 the CTC
        head's best tokens out-score the lexicon's spelling of known words).

    Work whose outputs exist and were made with the same settings is skipped; outputs of
    different settings are an error unless ``overwrite``.
    """
    d = Path(lang_dir)
    t0 = time.time()
    sentences: List[List[str]] = []
    for t in texts:
        sentences += _check_words(read_transcripts(t, kaldi_text), str(t))
    if not sentences:
        raise UserError(f"no transcripts in {', '.join(map(str, texts))}")
    if bpe_model is not None and not Path(bpe_model).is_file():
        raise UserError(f"BPE model {bpe_model} does not exist")
    arpa_lm = None
    if arpa is not None:
        from sltk.decode.ngram import read_arpa

        arpa_lm = read_arpa(arpa)
        lm_order = arpa_lm.order
    if lm_order < 0:
        raise UserError(f"--lm-order must be >= 0, got {lm_order}")

    settings = {
        "format": LANG_FORMAT,
        "vocab_size_requested": vocab_size if bpe_model is None else None,
        "lm_order": lm_order,
        "modified_ctc_topo": bool(modified_ctc_topo),
        "text_sha1": _sha1_sentences(sentences),
        "bpe_model_sha1": _sha1_file(bpe_model) if bpe_model is not None else None,
        "arpa_sha1": _sha1_file(arpa) if arpa is not None else None,
    }
    if open_vocab:  # only then: directories of closed-vocabulary runs keep their settings
        if unk_penalty > 0:
            raise UserError(f"--unk-penalty must be <= 0 (a log score), got {unk_penalty}")
        settings.update(open_vocab=True, unk_penalty=float(unk_penalty))
    if graphs is None:
        graphs = k2_available()
        if not graphs:
            log.warning("k2 cannot be imported: the graphs H, L, G and HLG are not built")
    lm_name = f"lm_{lm_order}gram.arpa"
    g_name = f"G_{lm_order}gram.pt"
    stages = {
        "bpe": ["bpe.model"],
        "lexicon": ["words.txt", "tokens.txt", "lexicon.txt", "lexicon_disambig.txt"],
        "HL": ["H.pt", "L.pt", "L_disambig.pt"] if graphs else [],
        "lm": [lm_name] if lm_order > 0 else [],
        "G": [g_name] if lm_order > 0 and graphs else [],
        "HLG": ["HLG.pt"] if lm_order > 0 and graphs else [],
    }

    record = None
    for name in ("lang.json", ".lang.partial.json"):
        if (d / name).is_file():
            try:
                record = json.loads((d / name).read_text(encoding="utf-8")).get("settings")
            except (ValueError, AttributeError):
                record = None
            break
    ours = [f for f in _OUTPUTS if (d / f).exists()]
    if not overwrite and ours:
        if record is None:
            raise UserError(f"{d} holds {', '.join(ours[:3])}... of an unknown run; "
                            "use --overwrite or another directory")
        if record != settings:
            diff = [k for k in settings if record.get(k) != settings[k]]
            raise UserError(f"{d} was prepared with other settings ({', '.join(diff)} differ); "
                            "use --overwrite or another directory")
        if (d / "lang.json").is_file() and all((d / f).is_file() for fs in stages.values() for f in fs):
            log.info("%s is up to date (use --overwrite to redo it)", d)
            return load_lang(d)
    d.mkdir(parents=True, exist_ok=True)
    with atomic_open(d / ".lang.partial.json", "w", encoding="utf-8") as f:
        json.dump({"settings": settings}, f, indent=1)
    if (d / "lang.json").exists():  # the directory is complete again only when it is rewritten
        (d / "lang.json").unlink()

    dirty = bool(overwrite)
    info: dict = {}

    def must_run(stage: str) -> bool:
        nonlocal dirty
        files = stages[stage]
        if not files:
            return False
        if dirty or not all((d / f).is_file() for f in files):
            dirty = True
            log.info("stage %s: writing %s", stage, " ".join(files))
            return True
        log.info("stage %s: %s exist, skipped", stage, " ".join(files))
        return False

    # ---------------------------------------------------------------- 1. BPE model
    if must_run("bpe"):
        if bpe_model is not None:
            with atomic_path(d / "bpe.model") as tmp:
                shutil.copyfile(bpe_model, tmp)
        else:
            model = train_bpe(sentences, vocab_size)
            with atomic_open(d / "bpe.model", "wb") as f:
                f.write(model)
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor()
    try:
        sp.load(str(d / "bpe.model"))
    except (OSError, RuntimeError) as e:
        raise UserError(f"{d / 'bpe.model'} is not a sentencepiece model: {str(e).splitlines()[0]}") from None
    V = sp.get_piece_size()
    pieces = [sp.id_to_piece(i) for i in range(V)]
    if pieces[:3] != [BLANK, SOS_EOS, UNK]:
        raise UserError(f"BPE model must have {BLANK}, {SOS_EOS}, {UNK} as ids 0, 1, 2; "
                        f"{bpe_model or d / 'bpe.model'} has {' '.join(pieces[:3])}")
    if bpe_model is None and V < vocab_size:
        log.warning("the text allows only %d BPE pieces (asked for --vocab-size %d)", V, vocab_size)

    # ---------------------------------------------------------------- 2. lexicon
    if must_run("lexicon"):
        vocab = {w for s in sentences for w in s}
        if arpa_lm is not None:
            extra = {w for w in arpa_lm.vocab if w not in _SPECIAL_WORDS and w != UNK}
            bad = {w for w in extra if w == EPS or _DISAMBIG.match(w)}
            if bad:
                log.warning("%s: skipping reserved symbols in the ARPA vocabulary: %s", arpa, " ".join(c_sorted(bad)))
            vocab |= extra - bad
        lexicon = []
        no_pieces = []
        for w in c_sorted(vocab):
            ids = sp.encode(w, out_type=int)
            if not ids or UNK in (sp.id_to_piece(i) for i in ids) or sp.decode(ids) != w:
                no_pieces.append(w)
                continue
            lexicon.append((w, [sp.id_to_piece(i) for i in ids]))
        if no_pieces:
            log.warning("%d words cannot be spelled with the BPE pieces and are left out of the "
                        "lexicon, e.g. %s", len(no_pieces), " ".join(no_pieces[:5]))
        if not lexicon:
            raise UserError("no word of the transcripts can be spelled with the BPE model")
        lex_disambig, max_disambig = add_disambig_symbols(lexicon)
        unk_word = [UNK] if open_vocab else []  # before #0: word ids below #0 are outputs
        words = [EPS] + [w for w, _ in lexicon if w != UNK] + unk_word + ["#0", "<s>", "</s>"]
        tokens = pieces + [f"#{i}" for i in range(max_disambig + 1)] + ([UNK_TOKEN] if open_vocab else [])
        write_symbols(d / "tokens.txt", tokens)
        write_lexicon(d / "lexicon.txt", lexicon)
        write_lexicon(d / "lexicon_disambig.txt", lex_disambig)
        write_symbols(d / "words.txt", words)  # last: the stage's outputs all exist only if done
    token2id = read_symbols(d / "tokens.txt")
    word2id = read_symbols(d / "words.txt")
    lexicon = read_lexicon(d / "lexicon.txt")
    lex_disambig = read_lexicon(d / "lexicon_disambig.txt")
    info.update(vocab_size=V, num_words=len(lexicon),
                num_disambig=sum(1 for t in token2id if _DISAMBIG.match(t)) - 1)

    # ---------------------------------------------------------------- 3. H, L, L_disambig
    if must_run("HL"):
        from sltk.decode import graphs

        def lex_ids(lex):
            return [(word2id[w], [token2id[t] for t in toks]) for w, toks in lex]

        H = graphs.build_ctc_topo(V - 1, modified=modified_ctc_topo)
        graphs.save_fsa(H, d / "H.pt")
        graphs.save_fsa(graphs.build_lexicon_fst(lex_ids(lexicon)), d / "L.pt")
        unk = (token2id[UNK_TOKEN], word2id[UNK]) if open_vocab else None
        Ld = graphs.build_lexicon_fst(lex_ids(lex_disambig), token2id["#0"], word2id["#0"], unk=unk)
        graphs.save_fsa(Ld, d / "L_disambig.pt")

    if lm_order > 0:
        from sltk.decode import ngram

        # ------------------------------------------------------------ 4. n-gram LM
        if must_run("lm"):
            if arpa is not None:
                with atomic_path(d / lm_name) as tmp:
                    shutil.copyfile(arpa, tmp)
            else:
                lm = ngram.train_kneser_ney(_with_unk_copy(sentences) if open_vocab else sentences, lm_order)
                ngram.write_arpa(lm, d / lm_name)
                log.info("trained a %d-gram LM: %s n-grams", lm_order,
                         "/".join(str(lm.num_ngrams(k)) for k in range(1, lm_order + 1)))
        # ------------------------------------------------------------ 5. G
        if must_run("G"):
            from sltk.decode import graphs

            lm = ngram.read_arpa(d / lm_name)
            G, gstats = graphs.arpa_to_fsa(lm, word2id, word2id["#0"], short_history=UNK if open_vocab else None)
            if gstats["skipped_ngrams"]:
                log.warning("G: skipped %d n-grams with words outside words.txt", gstats["skipped_ngrams"])
            log.info("G: %d states, %d arcs", gstats["states"], gstats["arcs"])
            graphs.save_fsa(G, d / g_name)
        # ------------------------------------------------------------ 6. HLG
        if must_run("HLG"):
            from sltk.decode import graphs

            H = graphs.load_fsa(d / "H.pt")
            Ld = graphs.load_fsa(d / "L_disambig.pt")
            G = graphs.load_fsa(d / g_name)
            spell = _unk_spelling(pieces, token2id, float(unk_penalty)) if open_vocab else None
            HLG = graphs.compile_hlg(H, Ld, G, token2id["#0"], word2id["#0"], spell)
            graphs.save_fsa(HLG, d / "HLG.pt")

    config = {
        "settings": settings,
        **info,
        "vocab_size": V,
        "lm_order": lm_order,
        "blank_id": 0,
        "sos_eos_id": 1,
        "unk_id": 2,
        "first_token_disambig_id": token2id["#0"],
        "first_word_disambig_id": word2id["#0"],
        "graphs": bool(graphs),
        "files": {
            "bpe_model": "bpe.model", "tokens": "tokens.txt", "words": "words.txt",
            "lexicon": "lexicon.txt", "lexicon_disambig": "lexicon_disambig.txt",
            **({"H": "H.pt", "L": "L.pt", "L_disambig": "L_disambig.pt"} if graphs else {}),
            **({"arpa": lm_name} if lm_order > 0 else {}),
            **({"G": g_name, "HLG": "HLG.pt"} if lm_order > 0 and graphs else {}),
        },
        "num_sentences": len(sentences),
        "sources": [str(t) for t in texts],
    }
    with atomic_open(d / "lang.json", "w", encoding="utf-8") as f:
        json.dump(config, f, indent=1)
        f.write("\n")
    (d / ".lang.partial.json").unlink(missing_ok=True)
    log.info("prepared %s in %.1f s", d, time.time() - t0)
    return load_lang(d)
