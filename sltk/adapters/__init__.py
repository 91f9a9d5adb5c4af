"""Residual adapters for a trained transducer, and their fusion.

An :class:`Adapter` (LayerNorm -> Linear(d, b) -> ReLU -> Linear(b, d), the up-projection
starting at zero) sits after chosen encoder layers and on the prediction network's output
(:class:`AdapterConfig`) and adds its output to the hidden state; the base model stays frozen.
Each adapter is saved in its own small file tied to its base model by a hash of the base
weights; several adapters are combined by sum, average or a trained attention fusion.

Library use (the programs ``train-adapter`` and ``fuse-adapters`` wrap these)::

    from sltk.adapters import fuse, load_adapter, transform_entry
    model = load_model("exp/rnnt/avg.pt")
    load_adapter(model, "exp/adapters/contacts.pt")     # one adapter, checked against the base hash
    fused = load_model("exp/rnnt/avg.pt")
    fuse(fused, ["exp/adapters/contacts.pt", "exp/adapters/songs.pt"], method="average")
    save_checkpoint("exp/fused.pt", fused, transforms=[transform_entry(fused)])   # load_model rebuilds it
"""

from sltk.adapters.attach import (ADAPTER_FORMAT, attach, base_hash, check_base, detach, freeze_all_but, fuse,
                                  fusion_weights, has_adapters, is_adapter_key, load_adapter, load_adapter_state,
                                  read_adapter, save_adapter, transform_entry)
from sltk.adapters.modules import METHODS, Adapter, AdapterConfig, AdapterSite, AttentionFusion

__all__ = ["ADAPTER_FORMAT", "METHODS", "Adapter", "AdapterConfig", "AdapterSite", "AttentionFusion", "attach",
           "base_hash", "check_base", "detach", "freeze_all_but", "fuse", "fusion_weights", "has_adapters",
           "is_adapter_key", "load_adapter", "load_adapter_state", "read_adapter", "save_adapter",
           "transform_entry"]
