"""PATE noisy aggregation (Papernot et al. 2017, 2018) for ASR, with its privacy accounting.

Teachers trained on disjoint shards of private data vote on a public, unlabelled set; a noisy
aggregate of their votes labels it for a student. :class:`NoisyAggregator` answers one query (a
vote histogram) with

* ``gnmax``: argmax_j (n_j + N(0, sigma^2));
* ``lnmax``: argmax_j (n_j + Lap(b)) (the original PATE's noisy max);
* ``confident-gnmax``: answer only if max_j n_j + N(0, sigma1^2) >= T, then GNMax with
  sigma (the paper's sigma2). Every query pays the threshold step, answered ones the answer.

and records each step's RDP in a :class:`PateAccountant` (data-independent and data-dependent
curves side by side; see :mod:`sltk.privacy.accountant`).

Two units of aggregation for ASR:

* **utterance** (:func:`aggregate_transcripts`): each teacher votes its 1-best transcript; the
  candidates are the distinct transcripts. One query per utterance, cheap in privacy, close to
  PATE's one-label-per-query setting. But the candidate set is itself private (a teacher can
  bring a transcript no other teacher has, which has no noisy count without it), so GNMax over
  the observed candidates is not exactly the fixed-domain mechanism the RDP curve is for. The
  accountant charges the difference: per query the probability delta_s that a candidate with 0
  votes in one of two neighbouring datasets wins (worst case over the histogram), and the final
  guarantee is (eps, delta + (1 + e^eps) sum delta_s) (a coupling with the fixed-domain mechanism
  over both datasets' candidates). It is small only with Confident-GNMax and a high threshold.
* **token** (:func:`aggregate_frames`): per frame of the teachers' CTC outputs (all teachers
  share the encoder frame rate), a vote over the public token vocabulary (each teacher's frame
  argmax, or with ``soft`` votes its posterior vector: the same sensitivity), noisy argmax,
  then CTC collapse. No support problem, but **every frame is a query**: expensive in privacy.
  ``nonblank_only`` first asks a noisy threshold question "do enough teachers vote non-blank?"
  (noise sigma1, sensitivity 1) and votes over the non-blank tokens only where it passes.

The guarantee is for neighbouring private datasets that differ in one example, hence in one
teacher's data: at the level of whatever unit is confined to one shard (an utterance; a
speaker when the shards are split by speaker).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import stats

from sltk.privacy import accountant as A

MECHANISMS = ("gnmax", "lnmax", "confident-gnmax")
UNITS = ("utterance", "token")


class PateAccountant:
    """The privacy spent by one aggregation run: RDP curves (data-independent and
    data-dependent), pure eps (LNMax), the support term (utterance unit) and query counts."""

    def __init__(self, orders=None):
        self.ind = A.RdpAccountant(orders)
        self.dep = A.RdpAccountant(orders)
        self.orders = self.ind.orders
        self.queries = 0            # queries asked (a Confident-GNMax query includes its threshold step)
        self.answered = 0           # queries that released a label
        self.threshold_steps = 0    # noisy threshold checks (Confident-GNMax's, and the non-blank gate's)
        self.answer_steps = 0       # noisy argmaxes
        self.pure_eps = 0.0         # sum of pure eps (LNMax answers); inf when Gaussian noise was used
        self.support_delta = 0.0    # sum of per-query delta_s (open candidate sets)

    def add(self, ind: np.ndarray, dep: np.ndarray) -> None:
        self.ind.compose(ind)
        self.dep.compose(dep)

    def report(self, delta: float, conversion: str = "classic") -> Dict:
        """The (eps, delta) summary: data-independent (the formal guarantee) and data-dependent."""
        eps_i, ord_i = self.ind.epsilon(delta, conversion)
        via = "rdp"
        if self.pure_eps < eps_i:  # LNMax only: basic composition of pure eps can be smaller
            eps_i, ord_i, via = self.pure_eps, None, "pure composition"
        eps_d, ord_d = self.dep.epsilon(delta, conversion)
        if eps_d > eps_i:
            eps_d, ord_d = eps_i, ord_i
        out = {
            "queries": self.queries, "answered": self.answered, "threshold_steps": self.threshold_steps,
            "answer_steps": self.answer_steps, "delta": delta, "conversion": conversion,
            "data_independent": {"eps": _num(eps_i), "order": ord_i, "via": via},
            "data_dependent": {"eps": _num(eps_d), "order": ord_d,
                               "note": "depends on the private votes, so it is not itself differentially "
                                       "private (Papernot et al. 2018 release it after smooth-sensitivity "
                                       "sanitisation, not implemented here)"},
        }
        if self.pure_eps < math.inf:
            out["pure_eps_composed"] = _num(self.pure_eps)
        if self.support_delta > 0:
            total = delta + (1 + math.exp(min(eps_i, 700))) * self.support_delta
            out["support"] = {"delta_sum": self.support_delta, "delta_total": min(1.0, total),
                              "note": "open candidate sets (utterance unit): the guarantee is (eps, delta_total) "
                                      "with delta_total = delta + (1 + e^eps) * delta_sum"}
        out["eps"] = _num(eps_i)
        out["order"] = ord_i
        out["delta_total"] = out["support"]["delta_total"] if "support" in out else delta
        return out


def _num(x: float):
    return x if math.isfinite(x) else "inf"


class NoisyAggregator:
    """Answers vote-histogram queries with one of ``MECHANISMS``, seeded, and accounts for them.

    Args:
      mechanism: ``gnmax``, ``lnmax`` or ``confident-gnmax``.
      sigma: std of the Gaussian noise on the counts (GNMax; Confident-GNMax's answer step).
      sigma1: std of the threshold step's noise (Confident-GNMax; the token unit's non-blank gate).
      threshold: Confident-GNMax's threshold T on the max count.
      laplace_scale: b of LNMax's Laplace noise.
      seed: seeds the numpy generator that draws every noise sample.
      num_voters: the number of teachers (bounds the support term of open candidate sets).
      data_dependent: also compute the data-dependent curves (a little slower).
    """

    def __init__(self, mechanism: str, sigma: Optional[float] = None, sigma1: Optional[float] = None,
                 threshold: Optional[float] = None, laplace_scale: Optional[float] = None, seed: int = 0,
                 num_voters: Optional[int] = None, orders=None, data_dependent: bool = True):
        if mechanism not in MECHANISMS:
            raise ValueError(f"unknown mechanism {mechanism!r} (one of {', '.join(MECHANISMS)})")
        if mechanism in ("gnmax", "confident-gnmax") and not (sigma is not None and sigma > 0):
            raise ValueError(f"{mechanism} needs sigma > 0")
        if mechanism == "lnmax" and not (laplace_scale is not None and laplace_scale > 0):
            raise ValueError("lnmax needs laplace_scale > 0")
        if mechanism == "confident-gnmax" and (threshold is None or not (sigma1 is not None and sigma1 > 0)):
            raise ValueError("confident-gnmax needs sigma1 > 0 and a threshold")
        self.mechanism, self.sigma, self.sigma1 = mechanism, sigma, sigma1
        self.threshold, self.laplace_scale, self.seed = threshold, laplace_scale, seed
        self.num_voters, self.data_dependent = num_voters, data_dependent
        self.rng = np.random.default_rng(seed)
        self.accountant = PateAccountant(orders)
        o = self.accountant.orders
        self._ind_answer = A.rdp_lnmax(laplace_scale, o) if mechanism == "lnmax" else A.rdp_gnmax(sigma, o)
        self._ind_threshold = A.rdp_threshold(sigma1, o) if sigma1 else None
        if mechanism != "lnmax":
            self.accountant.pure_eps = math.inf

    # ------------------------------------------------------------------ steps
    def threshold_step(self, value: float, threshold: float) -> bool:
        """Noisy check value + N(0, sigma1^2) >= threshold, for a value of sensitivity 1."""
        if not self.sigma1:
            raise ValueError("a threshold step needs sigma1 > 0")
        acc = self.accountant
        acc.threshold_steps += 1
        acc.pure_eps = math.inf  # Gaussian noise: no pure-DP composition any more
        dep = (A.rdp_threshold_data_dependent(value, threshold, self.sigma1, acc.orders) if self.data_dependent
               else self._ind_threshold)
        acc.add(self._ind_threshold, dep)
        return bool(value + self.rng.normal(0.0, self.sigma1) >= threshold)

    def noisy_argmax(self, counts: np.ndarray, open_support: bool = False) -> int:
        """The answer step: argmax of counts plus Gaussian (GNMax) or Laplace (LNMax) noise."""
        acc = self.accountant
        acc.answer_steps += 1
        extra = 1 if open_support else 0
        noisy = self._noisy(counts)
        if self.mechanism == "lnmax":
            acc.pure_eps += A.laplace_eps(self.laplace_scale)
            dep = (A.rdp_lnmax_data_dependent(counts, self.laplace_scale, acc.orders, extra) if self.data_dependent
                   else self._ind_answer)
        else:
            dep = (A.rdp_gnmax_data_dependent(counts, self.sigma, acc.orders, extra) if self.data_dependent
                   else self._ind_answer)
        acc.add(self._ind_answer, dep)
        return int(np.argmax(noisy))

    def _noisy(self, counts: np.ndarray) -> np.ndarray:
        """counts + the answer step's noise (Laplace of scale b, or N(0, sigma^2)) on every count."""
        if self.mechanism == "lnmax":
            return counts + self.rng.laplace(0.0, self.laplace_scale, counts.shape)
        return counts + self.rng.normal(0.0, self.sigma, counts.shape)

    def query(self, counts: Sequence[float], open_support: bool = False) -> Optional[int]:
        """One PATE query on a vote histogram: the index of the noisy winner, or None when
        Confident-GNMax does not answer. ``open_support``: the candidates are data-dependent
        (utterance unit), charge the support term."""
        c = np.asarray(counts, dtype=float).ravel()
        if c.size == 0:
            raise ValueError("empty vote histogram")
        acc = self.accountant
        acc.queries += 1
        if open_support:
            acc.support_delta += self.support_delta_per_query()
        if self.mechanism == "confident-gnmax" and not self.threshold_step(float(c.max()), self.threshold):
            return None
        acc.answered += 1
        return self.noisy_argmax(c, open_support)

    def support_delta_per_query(self) -> float:
        """delta_s: the largest probability, over histograms, that a candidate with no vote (one
        that only a neighbouring dataset's changed teacher brings) would win: it must beat the top
        count m >= 1 (and, for Confident-GNMax, the query must be answered)."""
        if not hasattr(self, "_support"):
            if self.mechanism == "lnmax":
                g = 1.0 / self.laplace_scale
                self._support = (2 + g) / 4 * math.exp(-g)
            else:
                beat = lambda m: stats.norm.sf(m / (math.sqrt(2) * self.sigma))  # noqa: E731
                if self.mechanism == "gnmax":
                    self._support = float(beat(1.0))
                else:
                    top = self.num_voters or int(math.ceil(self.threshold + 10 * self.sigma1)) + 1
                    m = np.arange(1, max(2, top) + 1, dtype=float)
                    pr_answer = stats.norm.sf((self.threshold - m) / self.sigma1)
                    self._support = float(np.max(pr_answer * beat(m)))
        return self._support

    # ------------------------------------------------------------------ report
    def describe(self) -> Dict:
        d = {"mechanism": self.mechanism, "seed": self.seed}
        if self.mechanism == "lnmax":
            d.update(laplace_scale=self.laplace_scale, eps_per_answer=A.laplace_eps(self.laplace_scale))
        else:
            d["sigma"] = self.sigma
        if self.mechanism == "confident-gnmax":
            d.update(sigma1=self.sigma1, threshold=self.threshold)
        elif self.sigma1:
            d["sigma1"] = self.sigma1
        return d

    def report(self, delta: float, conversion: str = "classic") -> Dict:
        return {**self.describe(), **self.accountant.report(delta, conversion)}


# ---------------------------------------------------------------------------- utterance unit

@dataclass
class UtteranceVote:
    label: Optional[str]          # the released transcript; None when not answered
    agreement: float              # top count / number of teachers (noiseless: private diagnostics)
    top_count: int
    num_candidates: int


def vote_histogram(votes: Sequence[str]) -> Tuple[List[str], np.ndarray]:
    """The distinct candidates (sorted, so that noise draws are reproducible) and their counts."""
    cands = sorted(set(votes), key=lambda s: s.encode("utf-8"))
    index = {c: i for i, c in enumerate(cands)}
    counts = np.zeros(len(cands))
    for v in votes:
        counts[index[v]] += 1
    return cands, counts


def aggregate_transcripts(hyps: Sequence[str], agg: NoisyAggregator) -> UtteranceVote:
    """One utterance: the teachers' transcripts vote, the noisy winner is the label. An
    utterance on which all teachers disagree still gets a (noisy) answer from GNMax/LNMax."""
    if not hyps:
        raise ValueError("no teacher transcripts")
    cands, counts = vote_histogram(hyps)
    ans = agg.query(counts, open_support=True)
    top = int(counts.max())
    return UtteranceVote(label=None if ans is None else cands[ans], agreement=top / len(hyps), top_count=top,
                         num_candidates=len(cands))


# ---------------------------------------------------------------------------- token unit

@dataclass
class FrameVote:
    ids: Optional[List[int]]      # collapsed token ids; None when the utterance is not answered
    frames: int                   # frames of the utterance
    queried: int = 0              # frames that asked the noisy argmax
    answered: int = 0             # frames with a released decision (gate said blank, or answered)
    agreement: float = 0.0        # mean top vote / number of teachers over frames (private diagnostics)
    path: List[int] = field(default_factory=list)  # per-frame released tokens (blank where none)


def frame_histograms(teacher_logprobs: Sequence[np.ndarray], votes: str = "hard") -> np.ndarray:
    """(T, V) per-frame histograms from each teacher's (T, V) CTC log-probs: ``hard`` counts the
    teachers whose frame argmax is each token; ``soft`` sums the teachers' posteriors (each
    teacher contributes a probability vector: the same L1 / L2 sensitivity as one vote)."""
    if not teacher_logprobs:
        raise ValueError("no teachers")
    T, V = teacher_logprobs[0].shape
    hist = np.zeros((T, V))
    for lp in teacher_logprobs:
        if lp.shape != (T, V):
            raise ValueError(f"teachers disagree on the frame count or vocabulary: {lp.shape} vs {(T, V)}")
        if votes == "hard":
            hist[np.arange(T), np.argmax(lp, axis=1)] += 1
        elif votes == "soft":
            hist += np.exp(lp)
        else:
            raise ValueError(f"votes must be 'hard' or 'soft', got {votes!r}")
    return hist


def ctc_collapse(path: Sequence[int], blank: int = 0) -> List[int]:
    """Merge repeated tokens, then drop blanks."""
    out, prev = [], None
    for t in path:
        if t != prev and t != blank:
            out.append(int(t))
        prev = t
    return out


def aggregate_frames(hist: np.ndarray, agg: NoisyAggregator, num_teachers: int, blank: int = 0,
                     nonblank_only: bool = False, blank_threshold: Optional[float] = None,
                     min_answered: float = 1.0) -> FrameVote:
    """One utterance, per-frame voting: each frame is a query over the vocabulary (or, with
    ``nonblank_only``, a noisy gate on the non-blank vote mass and, where it passes, a query
    over the non-blank tokens). A frame Confident-GNMax does not answer becomes blank; the
    utterance is answered when at least ``min_answered`` of its frames were, and querying stops
    as soon as that can no longer happen (saving privacy)."""
    T, V = hist.shape
    res = FrameVote(ids=None, frames=T)
    if T == 0:
        return res
    res.agreement = float(np.mean(hist.max(axis=1))) / num_teachers
    need = math.ceil(min_answered * T - 1e-9)
    nonblank = np.array([j for j in range(V) if j != blank])
    path: List[Optional[int]] = []
    for t in range(T):
        if res.answered + (T - t) < need:  # min_answered cannot be reached any more: stop asking
            res.path = [blank if p is None else p for p in path]
            return res
        row = hist[t]
        if nonblank_only:
            if blank_threshold is None:
                raise ValueError("nonblank_only needs a blank_threshold")
            if not agg.threshold_step(float(num_teachers - row[blank]), blank_threshold):
                path.append(blank)
                res.answered += 1
                continue
            res.queried += 1
            a = agg.query(row[nonblank])
            tok = None if a is None else int(nonblank[a])
        else:
            res.queried += 1
            a = agg.query(row)
            tok = None if a is None else int(a)
        if tok is not None:
            res.answered += 1
        path.append(tok)
    res.path = [blank if p is None else p for p in path]
    if res.answered >= need:
        res.ids = ctc_collapse(res.path, blank)
    return res


__all__ = ["MECHANISMS", "UNITS", "FrameVote", "NoisyAggregator", "PateAccountant", "UtteranceVote",
           "aggregate_frames", "aggregate_transcripts", "ctc_collapse", "frame_histograms", "vote_histogram"]
