"""bias-decode on the toy corpus with the overfitted toy model: unbiased = CTC greedy on a peaky
model, an empty catalog reproduces the unbiased result exactly, a large boost pulls a catalog
phrase into the hypotheses, k2-lattice without boost = ctc_H decoding, per-utterance catalogs,
bad input."""

import json
from pathlib import Path

import pytest
import torch
from lhotse import CutSet

from sltk.asr import loss as L
from sltk.asr.checkpoint import load_model
from sltk.asr.decode import DecodeOptions, Decoder, decode_cuts
from sltk.decode.lang import load_lang


def run_main(args, capsys):
    from sltk.bin.bias_decode import main

    rc = main.main([str(a) for a in args], standalone_mode=False)
    return rc or 0, capsys.readouterr().err


@pytest.fixture(scope="module")
def model_path(overfit_model):
    exp, _ = overfit_model
    return sorted(Path(exp).glob("avg-*.pt"))[-1]


def one_error(err: str) -> bool:
    return len([l for l in err.splitlines() if "error:" in l]) == 1 and "Traceback" not in err


def hyps(out: Path):
    return dict(l.split(" ", 1) if " " in l else (l, "") for l in (out / "hyp.txt").read_text().splitlines())


def reference_decode(model_path, cuts, lang_dir, method):
    torch.set_num_threads(1)
    model = load_model(model_path).eval()
    res = decode_cuts(Decoder(model, method, load_lang(lang_dir), DecodeOptions(), torch.device("cpu")),
                      CutSet.from_file(cuts))
    return {k: v for k, v in res["hyps"].items()}


def base_args(model_path, cuts, lang, out, catalog):
    return ["--checkpoint", model_path, "--cuts", cuts, "--lang-dir", lang, "--catalog", catalog,
            "--encoder-bias", "off", "--out-dir", out]


def test_unbiased_empty_catalog_and_boost(model_path, toy_corpus, tmp_path, capsys):
    cuts, lang = toy_corpus
    empty = tmp_path / "empty.txt"
    empty.write_text("# no phrases\n")
    cat = tmp_path / "cat.txt"
    cat.write_text("bead\tbad value\n")
    rc, err = run_main(base_args(model_path, cuts, lang, tmp_path / "bad", cat), capsys)
    assert rc == 2 and one_error(err) and "boost 'bad value' is not a number" in err  # one clear message

    rc, _ = run_main(base_args(model_path, cuts, lang, tmp_path / "plain", empty) + ["--boost", "0"], capsys)
    assert rc == 0
    plain = hyps(tmp_path / "plain")
    greedy = reference_decode(model_path, cuts, lang, "ctc_greedy")
    assert plain == greedy and len(plain) == 10           # a peaky model: prefix beam = greedy
    rc, _ = run_main(base_args(model_path, cuts, lang, tmp_path / "empty", empty) + ["--boost", "3"], capsys)
    assert rc == 0 and hyps(tmp_path / "empty") == plain  # an empty catalog changes nothing
    rtf = json.loads((tmp_path / "empty" / "rtf.json").read_text())
    assert rtf["utterances"] == 10 and rtf["boost"] == 3 and rtf["method"] == "prefix-beam"

    cat.write_text("bead\n")
    rc, _ = run_main(base_args(model_path, cuts, lang, tmp_path / "boosted", cat) + ["--boost", "40"], capsys)
    assert rc == 0
    count = lambda h: sum(t.split().count("BEAD") for t in h.values())  # noqa: E731
    assert count(hyps(tmp_path / "boosted")) > count(plain)    # the catalog phrase is pulled in


@pytest.mark.skipif(not L.k2_available(), reason="k2 is not importable")
def test_k2_lattice_without_boost_is_ctc_h(model_path, toy_corpus, tmp_path, capsys):
    cuts, lang = toy_corpus
    cat = tmp_path / "cat.txt"
    cat.write_text("face\ndead cab\n")
    rc, _ = run_main(base_args(model_path, cuts, lang, tmp_path / "k2", cat) + ["--method", "k2-lattice",
                                                                                "--boost", "0"], capsys)
    assert rc == 0
    assert hyps(tmp_path / "k2") == reference_decode(model_path, cuts, lang, "ctc_H")
    rc, _ = run_main(base_args(model_path, cuts, lang, tmp_path / "k2b", cat) + ["--method", "k2-lattice",
                                                                                 "--boost", "1"], capsys)
    assert rc == 0 and len(hyps(tmp_path / "k2b")) == 10


def test_per_utterance_catalogs_and_errors(model_path, toy_corpus, tmp_path, capsys):
    cuts, lang = toy_corpus
    ids = [c.id for c in CutSet.from_file(cuts)]
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "a.txt").write_text("face\n")
    (tmp_path / "cats" / "b.txt").write_text("bead\tzzz\n".replace("\tzzz", "\t2.5"))
    table = tmp_path / "cats" / "utt2catalog"
    table.write_text("".join(f"{u} {'a' if i % 2 else 'b'}.txt\n" for i, u in enumerate(ids)))
    args = ["--checkpoint", model_path, "--cuts", cuts, "--lang-dir", lang, "--encoder-bias", "off"]
    rc, _ = run_main(args + ["--utt2catalog", table, "--out-dir", tmp_path / "per"], capsys)
    assert rc == 0 and set(hyps(tmp_path / "per")) == set(ids)

    def err_of(extra):
        rc, err = run_main(args + extra + ["--out-dir", tmp_path / "x"], capsys)
        assert rc == 2 and one_error(err), err
        return err

    assert "exactly one" in err_of([])
    assert "exactly one" in err_of(["--utt2catalog", table, "--catalog", tmp_path / "cats" / "a.txt"])
    assert "needs --encoder-bias on" in err_of(["--utt2catalog", table, "--adaptive", "on"])
    table.write_text(f"{ids[0]} a.txt\n")
    assert "no catalog" in err_of(["--utt2catalog", table])
    rc, err = run_main(["--checkpoint", model_path, "--cuts", cuts, "--lang-dir", lang, "--catalog",
                        tmp_path / "cats" / "a.txt", "--out-dir", tmp_path / "y"], capsys)
    assert rc == 2 and "no context adapter" in err
