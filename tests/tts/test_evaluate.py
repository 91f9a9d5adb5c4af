"""DTW, MCD and F0 comparison, and the gap-closed arithmetic of the RESULTS table."""

import math

import numpy as np

from sltk.tts.evaluate import (PROSODY_SUBSETS, compare, dtw_path, gap_closed, mcd_path, mel_cepstra, results_table,
                               subset_metrics)


def test_dtw_path_of_a_stretched_sequence():
    a = np.array([[0.0], [1.0], [2.0]])
    b = np.array([[0.0], [0.0], [1.0], [2.0], [2.0]])
    assert dtw_path(a, b).tolist() == [[0, 0], [0, 1], [1, 2], [2, 3], [2, 4]]


def test_compare_identical_and_shifted():
    rng = np.random.default_rng(0)
    mel = rng.normal(0, 1, (40, 80))
    f0 = np.where(np.arange(40) % 10 < 7, 120.0, 0.0)
    r = compare(mel, mel, f0, f0)
    assert r["mcd_db"] == 0.0 and r["f0_gross_pct"] == 0.0
    assert r["f0_rmse_cents"] == 0.0
    # a synthesis a semitone higher everywhere: 100 cents RMSE
    r = compare(mel, mel, f0, f0 * 2 ** (1 / 12))
    assert math.isclose(r["f0_rmse_cents"], 100.0, rel_tol=1e-6)
    # an octave error is a gross error, not part of the RMSE
    f2 = f0.copy()
    f2[0] = 240.0
    r = compare(mel, mel, f0, f2)
    assert r["f0_rmse_cents"] == 0.0 and r["f0_gross_pct"] > 0


def test_gap_closed():
    assert gap_closed(10.0, 6.0, 7.0) == 75.0       # lower is better: 3 of the 4 recovered
    assert gap_closed(0.2, 0.6, 0.5) == 75.0        # higher is better (correlation): same formula
    assert gap_closed(1.0, 1.0, 0.5) is None


def test_subset_metrics_and_prosody_subsets():
    rows = [{"utt": "a", "source": "oracle", "mcd_db": 1.0, "char_errors": 1, "ref_chars": 10},
            {"utt": "b", "source": "oracle", "mcd_db": 3.0, "char_errors": 3, "ref_chars": 10},
            {"utt": "c", "source": "oracle", "mcd_db": 8.0, "char_errors": 0, "ref_chars": 20},
            {"utt": "a", "source": "predicted", "mcd_db": 2.0},
            {"utt": "c", "source": "predicted", "mcd_db": float("nan")}]
    m = subset_metrics(rows, lambda u: u in ("a", "b"))
    assert m["oracle"]["mcd_db"] == 2.0 and m["oracle"]["utterances"] == 2
    assert m["oracle"]["cer_pct"] == 20.0           # 4 errors in 20 characters, pooled
    assert m["predicted"]["mcd_db"] == 2.0 and m["predicted"]["utterances"] == 1
    assert subset_metrics(rows, lambda u: u == "c")["predicted"]["utterances"] == 1
    assert math.isnan(subset_metrics(rows, lambda u: u == "c")["predicted"]["mcd_db"])
    kinds = {"marked": {"focus": 2, "marked": True}, "unmarked": {"focus": 0, "marked": False},
             "none": {"focus": -1, "marked": False}}
    for (name, keep), want in zip(PROSODY_SUBSETS, ("marked", "unmarked", "none")):
        assert [k for k, p in kinds.items() if keep(p)] == [want], name


def test_results_table():
    row = {"mcd_db": 5.0, "f0_rmse_cents": 100.0, "f0_corr": 0.5, "f0_gross_pct": 1.0, "dur_mae_ms": 20.0,
           "len_err_pct": 5.0}
    better = {k: v / 2 for k, v in row.items()}
    mid = {k: 0.75 * v for k, v in row.items()}
    lines = results_table({"none": {"none": row, "copy": row}, "word": {"oracle": better, "predicted": mid}})
    text = "\n".join(lines)
    assert "| word | oracle |" in text and "| word | predicted |" in text
    assert lines[-1].startswith("| word | 50.0 |")


def test_transcript_and_character_errors():
    from sltk.tts.evaluate import _mean, char_errors, transcript

    assert transcript("is the *red* lamp on?") == "IS THE RED LAMP ON"
    # "RED LAMP" vs "RED LAMB": one substitution in 8 characters (the space counts)
    assert char_errors("RED LAMP", "RED LAMB") == (1, 8)
    assert char_errors("AB", "") == (2, 2)
    # CER pools errors over utterances (not a mean of per-utterance rates)
    rows = [{"char_errors": 1, "ref_chars": 8}, {"char_errors": 2, "ref_chars": 2}]
    assert _mean(rows)["cer_pct"] == 30.0
    assert _mean([{"mcd_db": 1.0}])["cer_pct"] != _mean([{"mcd_db": 1.0}])["cer_pct"]  # NaN without a judge


def test_phoneme_pitch_pooling_and_errors():
    from sltk.tts.dataset import phone_log_f0
    from sltk.tts.evaluate import phone_pitch_errors

    # phoneme 0: frames 100, 0 (voiced mean log2 100); phoneme 1: unvoiced; phoneme 2: 200, 200
    p, v = phone_log_f0(np.array([100.0, 0.0, 0.0, 200.0, 200.0]), np.array([2, 1, 2]))
    assert v.tolist() == [1.0, 0.0, 1.0] and np.allclose(p, [np.log2(100), 0.0, np.log2(200)])
    # predicted a semitone high on both voiced phonemes, and voices the unvoiced one
    r = phone_pitch_errors(p, v, p + 1 / 12, np.array([1.0, 1.0, 1.0]))
    assert math.isclose(r["f0_rmse_cents"], 100.0) and math.isclose(r["vuv_err_pct"], 100 / 3)


def test_mcd_of_a_known_cepstral_difference():
    # Adding the same constant to every log-mel bin changes c0 only, which MCD leaves out;
    # moving one cepstral coefficient by d in every frame gives 10/ln(10) * sqrt(2) * |d| dB.
    rng = np.random.default_rng(1)
    ref = rng.normal(0, 1, (30, 80))
    assert mcd_path(ref, ref + 3.0)[0] < 1e-4  # the DCT matrix is float32
    c = mel_cepstra(ref)
    basis = mel_cepstra(np.eye(80))           # row j: the cepstra of a unit bump in mel bin j
    direction = np.linalg.pinv(basis)[3]      # a log-mel change that moves c3 by 1 (and no other c_k)
    assert np.allclose(mel_cepstra(direction[None])[0], np.eye(basis.shape[1])[3], atol=1e-6)
    hyp = ref + 0.5 * direction
    value, path = mcd_path(ref, hyp)
    assert path.tolist() == [[i, i] for i in range(30)]
    assert math.isclose(value, 10 / math.log(10) * math.sqrt(2) * 0.5, rel_tol=1e-5)
    assert np.allclose(mel_cepstra(hyp) - c, 0.5 * np.eye(basis.shape[1])[3][None], atol=1e-6)
