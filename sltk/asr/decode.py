"""Decoding a CutSet with every method, with per-utterance scores and the real-time factor.

Methods (``METHODS``):

==================  =======================================================================
greedy              transducer greedy search (batched)
modified_beam       transducer beam search, one symbol per frame (batched)
fast_beam           k2 lattice-based transducer search over the trivial graph (stateless
                    prediction network)
fast_beam_LG        the same, constrained by the lexicon and the n-gram LM (LG graph)
ctc_greedy          CTC head, best frame-wise tokens collapsed
ctc_H               CTC head, k2 lattice decoding with the CTC topology H, one best path
ctc_HLG             CTC head, k2 lattice decoding with HLG (lexicon + n-gram LM), one best
ctc_HLG_nbest       CTC head, HLG lattice, n-best paths rescored, best taken
ctc_HLG_rnnt        two passes: ctc_HLG_nbest's best candidates, each scored by its lattice score
                    (CTC + LM) plus ``rnnt_scale`` x the transducer's log-likelihood of it
                    (all alignments), best taken: the two heads' errors differ
==================  =======================================================================

The score written per utterance is the log-likelihood of the hypothesis' tokens under the
model (all alignments: the RNN-T loss for transducer methods, the CTC loss for CTC methods),
so that scores are comparable across methods.

Test-time VTLN (:func:`estimate_warps`): each speaker's frequency-warp factor is chosen from a
grid as the one under which the model's greedy hypotheses are most likely; :func:`decode_cuts`
then warps each utterance's features by its speaker's factor before any method searches.

Every method also runs on the integer path of an accelerator (NNA) emulation
(:func:`setup_nna`): the search is unchanged, the model's operators compute as the NNA does.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch

from sltk.asr import loss as L
from sltk.asr.data import AsrBatches, FreqWarp
from sltk.asr.model import Transducer, pad_targets
from sltk.asr.search import fast_beam_search, greedy_search, modified_beam_search
from sltk.utils.errors import UserError

log = logging.getLogger("sltk")

METHODS = ("greedy", "modified_beam", "fast_beam", "fast_beam_LG", "ctc_greedy", "ctc_H", "ctc_HLG",
           "ctc_HLG_nbest", "ctc_HLG_rnnt")
NEEDS_K2 = {"fast_beam", "fast_beam_LG", "ctc_H", "ctc_HLG", "ctc_HLG_nbest", "ctc_HLG_rnnt"}


@dataclass
class DecodeOptions:
    beam: int = 4
    fast_beam: float = 20.0             # icefall's defaults; 4 / 32 lost LG hypotheses (asr1 RESULTS.md)
    max_states: int = 64
    max_contexts: int = 8
    search_beam: float = 20.0
    output_beam: float = 8.0
    num_paths: int = 100
    nbest_scale: float = 0.5
    lm_scale: float = 1.0               # scale of the LM scores in HLG (CTC head)
    lg_lm_scale: float = 0.01           # ... in LG (fast_beam_LG): the transducer has an LM of its own;
                                        # 1 / 0.3 / 0.1 / 0.01 gave 39.0 / 30.6 / 29.6 / 28.6% on asr1 dev
                                        # (icefall's default is 0.01 too)
    rnnt_scale: float = 0.5             # ctc_HLG_rnnt: weight of the transducer's log-likelihood (asr1 dev: below)
    rnnt_nbest: int = 10                # ... given to the candidates with the best lattice scores;
                                        # asr1 dev160 (ctc_HLG lm 0.5: 1best 22.15, nbest 21.39%): 10 x 0.5
                                        # 19.42%; 10 x 0.2 / 1.0 / 2.0: 19.89 / 19.60 / 20.08; 5 / 20 x 0.5:
                                        # 19.89 / 19.60
    nbest_prune: float = 1e-3           # ctc_HLG_nbest/_rnnt: lattice arcs of lower posterior removed before
                                        # the n-best (a 5 s asr1 utterance: 470091 -> 4507 arcs)
    nbest_chunk: int = 8                # ctc_HLG_nbest/_rnnt: utterances whose lattices are intersected
                                        # with their candidates at once (memory: a 300 s batch at once
                                        # took 23 GB with the asr1 domain-LM HLG)
    lg_unk_penalty: Optional[float] = -1.0  # fast_beam_LG, open-vocabulary lang: per-piece penalty of a
                                        # spelled <unk> word (None: the lang's unk_penalty x lg_lm_scale).
                                        # asr1 dev160 (avg-4-5): closed LG 24.32%; -6 (the lang's, unscaled)
                                        # 24.32, -2 24.41, -1 23.28, -0.3 23.66, -0.06 (scaled) 25.16
    lg_fallback: bool = True            # fast_beam_LG: an utterance that no word sequence of LG explains
                                        # (an out-of-vocabulary word) is decoded without LG


def compile_lg(lang, lm_scale: float = 1.0, unk_penalty: Optional[float] = None):
    """LG for transducer fast beam search: det(L o G) over tokens with word aux labels,
    disambiguation tokens removed (icefall's compile_lg), LM scores scaled; an open-vocabulary
    lang's ``<unk>`` spelled by tokens, each piece adding ``unk_penalty`` (None: the lang's
    penalty x ``lm_scale``, scaled like the rest of the LM)."""
    import k2

    from sltk.decode.graphs import compile_lg as _compile

    G = lang.graph("G")
    G = k2.Fsa.from_dict({k: v for k, v in G.as_dict().items()})
    G.scores = G.scores * lm_scale
    spell = lang.unk_spelling()
    if spell is not None:
        spell.penalty = spell.penalty * lm_scale if unk_penalty is None else float(unk_penalty)
    return _compile(lang.graph("L_disambig"), G, lang.token2id["#0"], lang.word2id["#0"], spell)


def _graph_with_lm_scale(graph, lm_scale: float):
    if lm_scale == 1.0 or not hasattr(graph, "lm_scores"):
        return graph
    import k2

    g = k2.Fsa.from_dict(graph.as_dict())
    g.scores = g.scores - g.lm_scores + lm_scale * g.lm_scores
    return g


class Decoder:
    """Decodes batches with one method; graphs are built once."""

    def __init__(self, model: Transducer, method: str, lang, opts: DecodeOptions, device: torch.device):
        if method not in METHODS:
            raise UserError(f"unknown method {method!r} (one of {', '.join(METHODS)})")
        if method in NEEDS_K2 and not L.k2_available():
            raise UserError(f"method {method} needs k2, which cannot be imported here")
        if method.startswith("fast_beam") and model.cfg.decoder != "stateless":
            raise UserError(f"method {method} needs the stateless prediction network; this model has "
                            f"'{model.cfg.decoder}' (use greedy or modified_beam)")
        if method.startswith("ctc") and model.cfg.ctc_weight <= 0:
            log.warning("the CTC head was trained with weight 0: %s results are meaningless", method)
        self.model, self.method, self.lang, self.opts, self.device = model, method, lang, opts, device
        self.graph = None
        if method == "fast_beam_LG":
            self.graph = compile_lg(lang, opts.lg_lm_scale, opts.lg_unk_penalty).to(device)
        elif method == "ctc_H":
            self.graph = lang.graph("H", device)
        elif method.startswith("ctc_HLG"):
            self.graph = _graph_with_lm_scale(lang.graph("HLG", device), opts.lm_scale)
        self.words_out = method in ("fast_beam_LG", "ctc_HLG", "ctc_HLG_nbest", "ctc_HLG_rnnt")
        # An open-vocabulary lang spells <unk> words with tokens: its graphs' text is in the tokens.
        self.tokens_of_graph = self.words_out and lang.open_vocab

    @torch.no_grad()
    def __call__(self, feats: torch.Tensor, lens: torch.Tensor):
        """Texts of a batch, and the encoder output (for :meth:`score`)."""
        m, o = self.model, self.opts
        enc, enc_lens = m.encode(feats.to(self.device), lens.to(self.device))
        meth = self.method
        if meth == "greedy":
            ids = greedy_search(m, enc, enc_lens)
        elif meth == "modified_beam":
            ids = modified_beam_search(m, enc, enc_lens, beam=o.beam)
        elif meth == "fast_beam_LG":
            return self._fast_beam_lg(enc, enc_lens), enc, enc_lens
        elif meth == "ctc_HLG_rnnt":
            return self._rescore_with_rnnt(enc, enc_lens), enc, enc_lens
        elif meth.startswith("fast_beam"):
            ids = fast_beam_search(m, enc, enc_lens, graph=self.graph, beam=o.fast_beam, max_states=o.max_states,
                                   max_contexts=o.max_contexts, use_word_labels=False)
        else:
            from sltk.decode.ctc import ctc_greedy, ctc_k2_decode

            lp = m.ctc_logprobs(enc)
            if meth == "ctc_greedy":
                ids = ctc_greedy(lp, enc_lens)
            elif meth.endswith("nbest"):
                ids = [c[0][0] if c else [] for c in self._nbest_lists(lp, enc_lens)]
            else:
                ids = ctc_k2_decode(lp, enc_lens, self.graph, search_beam=o.search_beam, output_beam=o.output_beam,
                                    output="tokens" if self.tokens_of_graph else "words")
        words = self.words_out and not self.tokens_of_graph
        texts = [self.lang.words_to_text(h) if words else self.lang.tokens_to_text(h) for h in ids]
        return texts, enc, enc_lens

    def _fast_beam_lg(self, enc: torch.Tensor, enc_lens: torch.Tensor) -> List[str]:
        """fast_beam_LG. A word in no lexicon entry leaves every hypothesis of the LG search stuck
        inside a word it cannot finish (or, without the fallback, ends the utterance at that word:
        the best partial path). With ``lg_fallback``, utterances whose search reached no final
        state of LG are decoded again without it (fast beam search over any token sequence);
        ``self.fallbacks`` counts them."""
        m, o = self.model, self.opts
        kw = dict(beam=o.fast_beam, max_states=o.max_states, max_contexts=o.max_contexts)
        ids = fast_beam_search(m, enc, enc_lens, graph=self.graph, use_word_labels=not self.tokens_of_graph,
                               allow_partial=not o.lg_fallback, **kw)
        texts = [self.lang.tokens_to_text(h) if self.tokens_of_graph else self.lang.words_to_text(h) for h in ids]
        redo = [i for i, h in enumerate(ids) if not h and int(enc_lens[i]) > 0] if o.lg_fallback else []
        if redo:
            idx = torch.tensor(redo, device=enc.device)
            sub = fast_beam_search(m, enc[idx], enc_lens[idx], **kw)
            for i, h in zip(redo, sub):
                texts[i] = self.lang.tokens_to_text(h)
            self.fallbacks = getattr(self, "fallbacks", 0) + len(redo)
        return texts

    def _nbest_lists(self, lp: torch.Tensor, enc_lens: torch.Tensor) -> List[list]:
        """Each utterance's n-best candidates on the graph (``sltk.decode.ctc.nbest_lists``: output
        symbols and lattice score, best first; [] when its lattice is empty), ``nbest_chunk``
        utterances' lattices at a time (the candidates' intersection with a large HLG's lattices
        is what takes the memory)."""
        from sltk.decode import ctc

        o = self.opts
        lists: List[list] = [[] for _ in range(lp.shape[0])]
        step = max(1, o.nbest_chunk)
        for a in range(0, lp.shape[0], step):
            lattice, index = ctc.get_lattice(lp[a: a + step], enc_lens[a: a + step], self.graph,
                                             o.search_beam, o.output_beam)
            if index:
                found = ctc.nbest_lists(lattice, num_paths=o.num_paths, nbest_scale=o.nbest_scale,
                                        prune_prob=o.nbest_prune,
                                        output="tokens" if self.tokens_of_graph else "words")
                for j, lst in zip(index, found):
                    lists[a + j] = lst
        return lists

    def _rescore_with_rnnt(self, enc: torch.Tensor, enc_lens: torch.Tensor) -> List[str]:
        """ctc_HLG_rnnt: the ``rnnt_nbest`` best of the HLG lattice's n-best candidates (word
        sequences; token sequences for an open-vocabulary lang), each scored lattice score +
        rnnt_scale x the transducer's log-likelihood of its tokens; the best per utterance."""
        m, o = self.model, self.opts
        lists = self._nbest_lists(m.ctc_logprobs(enc), enc_lens)
        texts = []
        for i, cands in enumerate(lists):
            if not cands:
                texts.append("")
                continue
            cands = cands[: max(1, o.rnnt_nbest)]  # best lattice scores first
            cand_texts = [self.lang.tokens_to_text(c) if self.tokens_of_graph else self.lang.words_to_text(c)
                          for c, _ in cands]
            ll = transducer_logliks(m, enc[i: i + 1], enc_lens[i: i + 1], [self.lang.encode(t) if t else []
                                                                         for t in cand_texts])
            total = [sc + o.rnnt_scale * x for (_, sc), x in zip(cands, ll)]
            texts.append(cand_texts[max(range(len(total)), key=total.__getitem__)])
        return texts

    @torch.no_grad()
    def score(self, enc: torch.Tensor, enc_lens: torch.Tensor, texts: List[str]) -> List[float]:
        """Log-likelihood of each hypothesis' tokens (transducer or CTC, as the method)."""
        m = self.model
        ys = [self.lang.encode(t) if t else [] for t in texts]
        if not self.method.startswith("ctc"):
            return [transducer_logliks(m, enc[i: i + 1], enc_lens[i: i + 1], [y])[0] for i, y in enumerate(ys)]
        out = []
        for i, y in enumerate(ys):
            e = enc[i: i + 1, : enc_lens[i]]
            el = enc_lens[i: i + 1]
            yy = torch.tensor([y], dtype=torch.long, device=e.device).reshape(1, len(y))
            yl = torch.tensor([len(y)], device=e.device)
            lp = m.ctc_logprobs(e)
            nll = torch.nn.functional.ctc_loss(lp.transpose(0, 1), yy, el, yl, blank=m.blank_id,
                                               reduction="sum", zero_infinity=False)
            out.append(-float(nll))
        return out


@torch.no_grad()
def transducer_logliks(model: Transducer, enc: torch.Tensor, enc_lens: torch.Tensor,
                       ys: List[List[int]]) -> List[float]:
    """The transducer's log-likelihood (all alignments) of each token sequence of ``ys`` given one
    utterance's encoder output (``enc`` (1, T, C), ``enc_lens`` (1,)), in one batch."""
    t = int(enc_lens[0])
    k = len(ys)
    if k == 0:
        return []
    e = enc[:, :t].expand(k, t, enc.shape[-1])
    el = enc_lens[:1].expand(k)
    yy, yl = pad_targets(ys, pad=model.blank_id, device=enc.device)
    logits = model.joiner(e[:, :, None, :], model.decoder(yy)[:, None, :, :])
    # torchaudio's loss needs at least one token per sequence; the torch reference takes any
    backend = "torchaudio" if min(len(y) for y in ys) > 0 and L.torchaudio_rnnt_available() else "torch"
    return (-L.rnnt_loss_full(logits, yy, el, yl, model.blank_id, backend, reduction="none")).tolist()


def _speaker(cut) -> str:
    sup = cut.supervisions[0] if cut.supervisions else None
    return sup.speaker if sup is not None and sup.speaker else cut.id


def _warp_batch(batch: Dict, utt_warps: Optional[Dict[str, float]], warper: Optional[FreqWarp]) -> None:
    """Warps, in place, each utterance of ``batch`` whose factor in ``utt_warps`` is not 1."""
    if not utt_warps:
        return
    x, lens = batch["feats"], batch["feat_lens"]
    for i, uid in enumerate(batch["ids"]):
        w = utt_warps.get(uid, 1.0)
        if w != 1.0:
            t = int(lens[i])
            x[i, :t] = warper.warp(x[i, :t], w)


def estimate_warps(model: Transducer, lang, cuts, warps: List[float], max_utts: int = 10,
                   max_duration: float = 300.0, device: Optional[torch.device] = None,
                   progress=None) -> Dict[str, float]:
    """Test-time VTLN: for each speaker (the supervisions' ``speaker``, else the cut), the factor
    of ``warps`` that maximises the per-frame log-likelihood of the transducer's greedy
    hypotheses on up to ``max_utts`` of the speaker's utterances, the features warped as
    :class:`sltk.asr.data.FreqWarp` does. Kaldi estimates a speaker's warp by maximum likelihood
    under a model in the same way (there a GMM and the reference alignment; here no transcript
    is needed). Ties go to the factor nearest 1."""
    from lhotse import CutSet
    from lhotse.dataset import SimpleCutSampler

    device = device or torch.device("cpu")
    chosen: Dict[str, List] = {}
    for c in cuts:
        lst = chosen.setdefault(_speaker(c), [])
        if len(lst) < max_utts:
            lst.append(c)
    sub = CutSet.from_cuts([c for lst in chosen.values() for c in lst])
    spk_of = {c.id: spk for spk, lst in chosen.items() for c in lst}
    warper = FreqWarp(sample_rate=next(iter(sub)).sampling_rate)
    dec = Decoder(model, "greedy", lang, DecodeOptions(), device)
    ds = AsrBatches()
    total: Dict[str, Dict[float, List[float]]] = {spk: {} for spk in chosen}
    order = sorted(warps, key=lambda w: abs(w - 1.0))
    grid = [(w, cs) for w in order for cs in SimpleCutSampler(sub, max_duration=max_duration, shuffle=False)]
    for w, cs in (progress(grid, desc="vtln") if progress else grid):
        b = ds[cs]
        _warp_batch(b, {uid: w for uid in b["ids"]}, warper)
        texts, enc, enc_lens = dec(b["feats"], b["feat_lens"])
        for uid, sc, n in zip(b["ids"], dec.score(enc, enc_lens, texts), enc_lens.tolist()):
            acc = total[spk_of[uid]].setdefault(w, [0.0, 0])
            acc[0] += sc
            acc[1] += n
    return {spk: max(order, key=lambda w: t[w][0] / max(1, t[w][1])) for spk, t in total.items()}


def decode_cuts(decoder: Decoder, cuts, max_duration: float = 300.0, progress=None,
                spk2warp: Optional[Dict[str, float]] = None) -> Dict:
    """Decode every cut; returns {"hyps": {id: text}, "refs": {...}, "scores": {...}, "audio_s",
    "decode_s"}. Audio seconds are from the cuts' durations. ``spk2warp``: test-time VTLN
    factors per speaker (:func:`estimate_warps`; a speaker not in it is not warped)."""
    from lhotse.dataset import SimpleCutSampler

    hyps, refs, scores = {}, {}, {}
    audio = 0.0
    elapsed = 0.0
    ds = AsrBatches()
    utt_warps = {c.id: spk2warp.get(_speaker(c), 1.0) for c in cuts} if spk2warp else None
    warper = FreqWarp(sample_rate=next(iter(cuts)).sampling_rate) if spk2warp else None
    sampler = SimpleCutSampler(cuts, max_duration=max_duration, shuffle=False)
    batches = progress(sampler, desc="decode") if progress else sampler
    for cutset in batches:
        b = ds[cutset]
        _warp_batch(b, utt_warps, warper)
        t0 = time.perf_counter()
        texts, enc, enc_lens = decoder(b["feats"], b["feat_lens"])
        elapsed += time.perf_counter() - t0  # the search only, not the scoring below
        sc = decoder.score(enc, enc_lens, texts)
        audio += sum(c.duration for c in cutset)
        for uid, ref, hyp, s in zip(b["ids"], b["texts"], texts, sc):
            hyps[uid], refs[uid], scores[uid] = hyp, ref, s
    return {"hyps": hyps, "refs": refs, "scores": scores, "audio_s": audio, "decode_s": elapsed}


def calibration_batches(cuts, lang, max_utts: int = 200, max_duration: float = 300.0):
    """(feats, feat_lens, token ids) batches of the first ``max_utts`` cuts with features, for
    calibrating activation ranges (post-training quantization)."""
    from lhotse import CutSet
    from lhotse.dataset import SimpleCutSampler

    chosen = [c for c in cuts if c.has_features][:max_utts]
    if not chosen:
        raise UserError("calibration cuts have no features")
    ds = AsrBatches()
    for cutset in SimpleCutSampler(CutSet.from_cuts(chosen), max_duration=max_duration, shuffle=False):
        b = ds[cutset]
        yield b["feats"], b["feat_lens"], [lang.encode(t) if t else [] for t in b["texts"]]


def setup_nna(model: Transducer, lang, nna_config: Optional[str] = None, calib_cuts=None, calib_utts: int = 200,
              mode: str = "int", max_duration: float = 300.0) -> str:
    """Prepare ``model`` for decoding on an emulated NNA; returns a description ('' when the
    model stays float).

    * A checkpoint trained with accelerator-aware training (it records an ``nna`` transform)
      decodes with its recorded profile and ranges; ``nna_config``, if given, must be that
      profile.
    * A float checkpoint with ``nna_config`` is post-training quantization: the model is
      converted, the activation ranges calibrated on ``calib_cuts`` (a CutSet; its first
      ``calib_utts`` utterances), then frozen.

    ``mode``: ``int`` (the integer path, what the NNA computes), ``fake`` (the training
    forward) or ``float``."""
    from sltk.nna import emulate as E
    from sltk.nna.profile import load_profile

    recorded = getattr(model, "nna_profile", None)
    if recorded is None and not nna_config:
        return ""
    if recorded is not None:
        if nna_config:
            prof = load_profile(nna_config)
            if prof.to_dict() != recorded.to_dict():
                raise UserError(f"the checkpoint was trained for the NNA profile '{recorded.name}', which differs "
                                f"from --nna-config {nna_config} ('{prof.name}'); leave --nna-config out or give "
                                "that profile")
        if calib_cuts is not None:
            log.info("ignoring the calibration cuts: the checkpoint records its calibrated ranges")
        E.freeze_ranges(model)
        E.set_mode(model, mode)
        return f"accelerator-aware checkpoint, NNA profile {recorded.describe()}, {mode} path"
    prof = load_profile(nna_config)
    E.convert(model, prof)
    if mode != "float":
        if calib_cuts is None:
            raise UserError(f"--nna-config {nna_config} on a float checkpoint is post-training quantization: its "
                            "activation ranges must be calibrated first; give --calib-cuts (e.g. the dev cuts)")
        n = E.calibrate(model, calibration_batches(calib_cuts, lang, calib_utts, max_duration))
        log.info("post-training quantization: activation ranges calibrated on %d utterances", n)
    E.set_mode(model, mode)
    return f"post-training quantization, NNA profile {prof.describe()}, {mode} path"
