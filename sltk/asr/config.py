"""Model configuration: the sizes and kinds of every part, saved inside each checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict

from sltk.utils.config import dataclass_from_dict
from sltk.utils.errors import UserError


@dataclass
class ModelConfig:
    feat_dim: int = 80
    vocab_size: int = 500
    blank_id: int = 0
    # encoder
    encoder: str = "conformer"          # conformer | lstm
    encoder_dim: int = 256
    num_encoder_layers: int = 6
    num_heads: int = 4                  # conformer
    ff_dim: int = 1024                  # conformer feed-forward
    conv_kernel: int = 15               # conformer depthwise convolution
    lstm_hidden: int = 512              # lstm encoder cell size (projected to encoder_dim)
    dropout: float = 0.1
    # prediction network
    decoder: str = "stateless"          # stateless | lstm
    decoder_dim: int = 256
    context_size: int = 2               # stateless decoder: tokens of left context
    decoder_layers: int = 1             # lstm decoder
    # joiner and heads
    joiner_dim: int = 256
    ctc_weight: float = 0.1             # weight of the auxiliary CTC loss (0 disables it)

    def __post_init__(self):
        if self.encoder not in ("conformer", "lstm"):
            raise UserError(f"model config: encoder must be conformer or lstm, got {self.encoder!r}")
        if self.decoder not in ("stateless", "lstm"):
            raise UserError(f"model config: decoder must be stateless or lstm, got {self.decoder!r}")
        if self.encoder == "conformer" and self.encoder_dim % self.num_heads:
            raise UserError(f"model config: encoder_dim {self.encoder_dim} is not divisible by "
                            f"num_heads {self.num_heads}")
        if self.vocab_size < 2:
            raise UserError("model config: vocab_size must be >= 2")

    @classmethod
    def from_dict(cls, d: Dict[str, Any], where: str = "model config") -> "ModelConfig":
        return dataclass_from_dict(cls, d, where)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)
