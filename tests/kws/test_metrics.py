"""FRR at a fixed false-accept rate on hand-made scores."""

import math

from sltk.kws.metrics import condition, evaluate, frr_at_far


def test_frr_at_far_hand_made():
    neg = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    pos = [0.95, 0.85, 0.5, 0.99]
    # FA 10% of 10 negatives: one may pass -> threshold 0.9 (score > 0.9 accepted)
    frr, fa, t = frr_at_far(pos, neg, 0.1)
    assert t == 0.9 and fa == 0.1 and frr == 0.5
    frr, fa, t = frr_at_far(pos, neg, 0.0)  # no false accepts: threshold at the top negative
    assert t == 1.0 and fa == 0.0 and frr == 1.0
    frr, fa, t = frr_at_far(pos, neg, 0.35)  # 3 may pass -> threshold 0.7
    assert t == 0.7 and abs(fa - 0.3) < 1e-12 and frr == 0.25
    assert math.isnan(frr_at_far(pos, [], 0.1)[0])


def test_evaluate_groups():
    scores = {"a": (0.9, 0.1), "b": (0.2, 0.8), "c": (0.6, 0.3), "d": (0.1, 0.2)}
    labels = {"a": (1, 0), "b": (0, 1), "c": (1, 0), "d": (0, 0)}
    sers = {"a": "clean", "b": "clean", "c": "-7.5", "d": "3"}
    r = evaluate(scores, labels, sers, far=0.0)
    assert condition("-7.5") == "ser[-10,-5)" and condition("10.0") == "ser[5,10)"
    assert r["tasks"]["kw"]["all"]["frr"] == 0.0  # positives 0.9, 0.6 above the top negative 0.2
    assert r["tasks"]["kw"]["clean"]["positives"] == 1 and r["tasks"]["kw"]["clean"]["negatives"] == 1
    assert r["tasks"]["kw"]["playback"]["positives"] == 1 and r["tasks"]["kw"]["playback"]["negatives"] == 1
    assert r["tasks"]["dd"]["all"]["frr"] == 0.0
