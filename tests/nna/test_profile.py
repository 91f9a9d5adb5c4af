"""NNA profiles: the shipped ones load, and impossible or unknown settings are refused clearly."""

import copy
from pathlib import Path

import pytest
import yaml

from sltk.nna.profile import KINDS, NNAProfile, load_profile
from sltk.utils.errors import UserError

CONF = Path(__file__).resolve().parents[2] / "egs" / "assistant" / "nna1" / "conf" / "nna"


def base():
    return yaml.safe_load((CONF / "int8.yaml").read_text())


def write(tmp_path, d, name="p.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(d))
    return p


def test_shipped_profiles():
    int8, harsh = load_profile(CONF / "int8.yaml"), load_profile(CONF / "harsh.yaml")
    assert (int8.weight_bits, int8.per_channel, int8.act_bits, int8.acc_bits) == (8, True, 8, 32)
    assert int8.sigmoid.entries == int8.tanh.entries == 256
    assert (harsh.per_channel, harsh.acc_bits, harsh.acc_saturate, harsh.sigmoid.entries) == (False, 16, True, 64)
    assert harsh.on_nna("lstm") and not harsh.on_nna("layernorm") and int8.on_nna("layernorm")
    for p in (int8, harsh):
        assert NNAProfile.from_dict(p.to_dict()) == p
        assert set(p.operators) == set(KINDS)


@pytest.mark.parametrize("edit,message", [
    (lambda d: d.update(weigths={"bits": 8}), "unknown key 'weigths' in NNA profile .*p.yaml"),
    (lambda d: d["accumulator"].update(saturating=True), "unknown key 'saturating' .*in accumulator"),
    (lambda d: d["luts"]["tanh"].update(size=3), "unknown key 'size' .*in luts.tanh"),
    (lambda d: d["operators"].update(softmaxx="cpu"), "unknown operator kind 'softmaxx'"),
])
def test_unknown_key_is_named(tmp_path, edit, message):
    d = base()
    edit(d)
    with pytest.raises(UserError, match=message):
        load_profile(write(tmp_path, d))


@pytest.mark.parametrize("edit,message", [
    (lambda d: d["accumulator"].update(bits=12), r"accumulator \(12 bits\) is narrower than one product .*16 bits"),
    (lambda d: d["weights"].update(bits=1), r"weights.bits = 1 is impossible \(must be in 2..32\)"),
    (lambda d: d["activations"].update(bits=33), r"activations.bits = 33 is impossible"),
    (lambda d: d["luts"]["sigmoid"].update(entries=48), "luts.sigmoid.entries must be a power of two, got 48"),
    (lambda d: d["luts"]["tanh"].update(entries=2), r"luts.tanh.entries = 2 is impossible \(must be in 4..65536\)"),
    (lambda d: d["luts"]["tanh"].update(input_range=0), "input_range must be a positive number"),
    (lambda d: d["requant"].update(multiplier_bits=32), "does not fit a 64-bit product"),
    (lambda d: d["weights"].update(granularity="per_row"), "granularity must be one of per_channel, per_tensor"),
    (lambda d: d["weights"].update(bits="8"), "weights.bits must be an integer"),
    (lambda d: d["operators"].update(attention="nna"), "operator 'attention' cannot run on the NNA"),
    (lambda d: d["operators"].update(lstm="gpu"), "operators.lstm must be nna or cpu"),
    (lambda d: d.pop("luts"), "missing key 'luts'"),
    (lambda d: d["lstm"].update(cell_bits=4), r"lstm.cell_bits \(4\) is narrower than the LUT outputs"),
    (lambda d: d["calibration"].update(momentum=1.0), "momentum must be in"),
])
def test_impossible_widths_are_refused(tmp_path, edit, message):
    d = base()
    edit(d)
    with pytest.raises(UserError, match=message):
        load_profile(write(tmp_path, d))


def test_not_a_mapping_and_missing_file(tmp_path):
    p = tmp_path / "list.yaml"
    p.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="must be a mapping"):
        load_profile(p)
    with pytest.raises(UserError, match="does not exist"):
        load_profile(tmp_path / "none.yaml")


def test_operators_left_out_fall_back_and_name_defaults_to_stem(tmp_path):
    d = copy.deepcopy(base())
    d.pop("name")
    d["operators"] = {"linear": "nna"}
    p = load_profile(write(tmp_path, d, "tiny.yaml"))
    assert p.name == "tiny" and p.on_nna("linear") and not p.on_nna("lstm")
