"""The packed model file (format ``sltk-packed-v1``): sub-8-bit weights as they are stored.

A packed file is written with ``torch.save`` (so :func:`sltk.asr.checkpoint.load_model` can
tell it from a checkpoint by its ``format``) and holds one byte blob plus a table of entries::

    {"format": "sltk-packed-v1", "model_config": {...}, "method": "gq" | "uniform" | "float",
     "quantization": {...},          # the transform meta (bit allocation, ...)
     "entries": [{"name", "kind", "shape", ...}, ...],
     "blob": uint8 tensor}           # every tensor's bytes, back to back, little-endian

Each entry is one tensor of the float model's state dict, by ``kind``:

* ``codebook`` (GQ): ``bits``; ``codes`` = (offset, nbytes) of the centroid indices, ``bits``
  bits each, packed LSB first (index i occupies bits [i*b, (i+1)*b) of the byte stream, bit k
  of the stream being bit k % 8 of byte k // 8); ``codebook`` = (offset, nbytes) of the 2^b
  float32 centroids. Value = codebook[index].
* ``uniform`` (QAT, PTQ): ``bits``, ``axis``; ``codes`` as above, storing ``q - qmin`` of the
  symmetric integer code q; ``scale`` = (offset, nbytes) of the float32 per-channel step sizes.
  Value = q * scale (:func:`sltk.nna.quant.dequantize`).
* ``float``: ``dtype``; ``data`` = (offset, nbytes) of the raw values (biases, norms, buffers,
  weights the allocation leaves in float).

Unpacking reproduces the quantized model's forward weights bit for bit. The bytes of the blob are
the model's size; the rest of the file is the pickled table (a few KiB). :func:`size_report`
lists, per tensor and in total, those bytes against the same model with 8-bit per-channel
weights, and :func:`load_packed` rebuilds a float-weight :class:`~sltk.asr.model.Transducer`
for decoding.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from sltk.asr.config import ModelConfig
from sltk.asr.model import Transducer
from sltk.nna import quant as Q
from sltk.nna.qparam import logical_state, quantizers
from sltk.utils.errors import UserError
from sltk.utils.io import PathLike, atomic_path

FORMAT = "sltk-packed-v1"
REFERENCE_BITS = 8


# ------------------------------------------------------------------------------- bit packing
def pack_bits(codes, bits: int) -> np.ndarray:
    """Unsigned codes in [0, 2^bits) -> bytes (uint8), ``bits`` bits per code, LSB first."""
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be in 1..8, got {bits}")
    c = np.asarray(codes).reshape(-1)
    if c.size and (c.min() < 0 or c.max() >= 1 << bits):
        raise ValueError(f"codes out of the {bits}-bit range [0, {(1 << bits) - 1}]")
    c = c.astype(np.uint8)
    if bits == 8:
        return c.copy()
    planes = np.unpackbits(c[:, None], axis=1, count=bits, bitorder="little")  # (N, bits)
    return np.packbits(planes.reshape(-1), bitorder="little")


def unpack_bits(buf, bits: int, n: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: the first ``n`` codes (int64)."""
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be in 1..8, got {bits}")
    buf = np.asarray(buf, dtype=np.uint8).reshape(-1)
    if buf.size < packed_size(n, bits):
        raise ValueError(f"{buf.size} bytes hold fewer than {n} codes of {bits} bits")
    if bits == 8:
        return buf[:n].astype(np.int64)
    planes = np.unpackbits(buf, count=n * bits, bitorder="little").reshape(n, bits)
    return np.packbits(planes, axis=1, bitorder="little")[:, 0].astype(np.int64)


def packed_size(n: int, bits: int) -> int:
    """Bytes of ``n`` codes of ``bits`` bits."""
    return (n * bits + 7) // 8


# ------------------------------------------------------------------------------- writing
class _Blob:
    def __init__(self):
        self.parts: List[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> Tuple[int, int]:
        off = self.size
        self.parts.append(data)
        self.size += len(data)
        return off, len(data)

    def tensor(self) -> torch.Tensor:
        return torch.from_numpy(np.frombuffer(b"".join(self.parts), dtype=np.uint8).copy())


def _f32(t: torch.Tensor) -> bytes:
    return t.detach().cpu().to(torch.float32).numpy().astype("<f4").tobytes()


def _float_entry(blob: _Blob, name: str, t: torch.Tensor) -> Dict:
    a = t.detach().cpu().numpy()
    return {"name": name, "kind": "float", "shape": list(a.shape), "dtype": a.dtype.name,
            "data": blob.add(a.astype(a.dtype.newbyteorder("<")).tobytes())}


def pack_state(model: nn.Module) -> Tuple[List[Dict], torch.Tensor]:
    """Entries and blob of a model: its quantized weights as codes (GQ: + codebook, uniform:
    + scales), everything else in float."""
    from sltk.nna.gq import GeneralQuantizer
    from sltk.nna.uniform import AXIS, UniformQuantizer

    qs = {name: q for name, _, q in quantizers(model)}
    blob = _Blob()
    entries = []
    with torch.no_grad():
        for name, t in logical_state(model).items():
            q = qs.get(name)
            if q is None:
                entries.append(_float_entry(blob, name, t))
            elif isinstance(q, GeneralQuantizer):
                codes = q.assign(t).cpu().numpy()
                entries.append({"name": name, "kind": "codebook", "shape": list(t.shape), "bits": q.bits,
                                "codes": blob.add(pack_bits(codes, q.bits).tobytes()),
                                "codebook": blob.add(_f32(q.centroids()))})
            elif isinstance(q, UniformQuantizer):
                qmin, _ = Q.qrange(q.bits)
                codes = (q.codes(t) - qmin).cpu().numpy()
                entries.append({"name": name, "kind": "uniform", "shape": list(t.shape), "bits": q.bits,
                                "axis": AXIS, "codes": blob.add(pack_bits(codes, q.bits).tobytes()),
                                "scale": blob.add(_f32(q.scales(t)))})
            else:
                raise ValueError(f"{name}: cannot pack a weight quantized by {type(q).__name__}")
    return entries, blob.tensor()


def packed_object(model: nn.Module, method: str, quantization: Optional[Dict] = None) -> Dict:
    m = model.module if hasattr(model, "module") else model
    entries, blob = pack_state(m)
    return {"format": FORMAT, "model_config": m.cfg.to_dict(), "method": method,
            "quantization": quantization or {}, "entries": entries, "blob": blob}


def save_packed(path: PathLike, model: nn.Module, method: str, quantization: Optional[Dict] = None) -> Dict:
    """Write the packed file of a quantized model (atomically); returns the packed object."""
    obj = packed_object(model, method, quantization)
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return obj


def serialized_size(obj: Dict) -> int:
    """Bytes of ``obj`` written with torch.save (what the file on disk takes)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.tell()


# ------------------------------------------------------------------------------- reading
def read_packed(path: PathLike) -> Dict:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"packed model {p} does not exist")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:
        raise UserError(f"packed model {p} cannot be read ({type(e).__name__}: {str(e)[:100]})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise UserError(f"{p} is not an sltk packed model ({FORMAT})")
    return obj


def _slice(buf: np.ndarray, span, where: str) -> np.ndarray:
    off, n = span
    if off < 0 or off + n > buf.size:
        raise UserError(f"{where}: entry reaches past the end of the data (corrupt file)")
    return buf[off:off + n]


def unpack_state(obj: Dict, where: str = "packed model") -> Dict[str, torch.Tensor]:
    """The float state dict a packed object describes (quantized weights dequantized)."""
    buf = obj["blob"].numpy()
    out = {}
    for e in obj["entries"]:
        name, shape = e["name"], tuple(e["shape"])
        n = math.prod(shape)
        if e["kind"] == "float":
            dt = np.dtype(e["dtype"])
            a = np.frombuffer(_slice(buf, e["data"], where).tobytes(), dtype=dt.newbyteorder("<"))
            out[name] = torch.from_numpy(a.astype(dt).reshape(shape))
        elif e["kind"] == "codebook":
            codes = torch.from_numpy(unpack_bits(_slice(buf, e["codes"], where), e["bits"], n))
            cb = torch.from_numpy(np.frombuffer(_slice(buf, e["codebook"], where).tobytes(), dtype="<f4")
                                  .astype(np.float32))
            if cb.numel() != 2 ** e["bits"]:
                raise UserError(f"{where}: {name}: codebook of {cb.numel()} values for {e['bits']} bits")
            out[name] = cb[codes].reshape(shape)
        elif e["kind"] == "uniform":
            qmin, _ = Q.qrange(e["bits"])
            codes = torch.from_numpy(unpack_bits(_slice(buf, e["codes"], where), e["bits"], n) + qmin)
            scale = torch.from_numpy(np.frombuffer(_slice(buf, e["scale"], where).tobytes(), dtype="<f4")
                                     .astype(np.float32))
            out[name] = Q.dequantize(codes.reshape(shape), scale, axis=e["axis"])
        else:
            raise UserError(f"{where}: {name}: unknown entry kind {e['kind']!r}")
    return out


def load_packed(path: PathLike) -> Transducer:
    """Rebuild the model of a packed file with float weights (the dequantized values), for
    decoding."""
    from sltk.asr.checkpoint import load_weights

    obj = read_packed(path)
    cfg = ModelConfig.from_dict(obj["model_config"], where=f"packed model {path}")
    model = Transducer(cfg)
    load_weights(model, unpack_state(obj, str(path)), str(path))
    return model


# ------------------------------------------------------------------------------- sizes
def _span_bytes(e: Dict, *keys: str) -> int:
    return sum(e[k][1] for k in keys if k in e)


def reference_bytes(shape, bits: int = REFERENCE_BITS) -> int:
    """Payload bytes of a weight at ``bits`` uniform per-channel: codes + float32 scales."""
    n = math.prod(shape)
    return packed_size(n, bits) + 4 * shape[0]


def reference_object(obj: Dict, bits: int = REFERENCE_BITS) -> Dict:
    """The packed object of the same model with every weight at ``bits`` uniform per-channel
    (min/max of the packed model's weights), for a size comparison on equal terms."""
    from sltk.nna.qparam import BitAllocation
    from sltk.nna.uniform import apply_ptq

    model = Transducer(ModelConfig.from_dict(obj["model_config"]))
    model.load_state_dict(unpack_state(obj))
    apply_ptq(model, BitAllocation.uniform(bits))
    return packed_object(model, "uniform", {"bits": bits})


def size_report(obj: Dict, file_bytes: Optional[int] = None, reference_bits: int = REFERENCE_BITS) -> Dict:
    """Per tensor and in total: ``bytes``, the packed bytes (codes, codebooks or scales,
    floats: what the tensor takes on disk, and in memory when held packed), against the same
    tensor at ``reference_bits`` uniform per-channel (every weight of 2+ dimensions; the rest in
    float as here) and in float32 (what the dequantized model of :func:`load_packed` holds);
    average bits per weight; the relative size against the reference, of the weights
    (``vs_8bit``) and of the files (``vs_8bit_file``).

    ``file_bytes``: the packed file's size (measured when not given); the reference file's
    size is measured by serializing the reference model the same way."""
    rows = []
    for e in obj["entries"]:
        shape = tuple(e["shape"])
        n = math.prod(shape)
        packed = _span_bytes(e, "codes", "codebook", "scale", "data")
        is_w = len(shape) >= 2
        rows.append({"name": e["name"], "shape": list(shape), "numel": n, "kind": e["kind"],
                     "bits": e.get("bits", "float"), "bytes": packed,
                     f"bytes_{reference_bits}bit": reference_bytes(shape, reference_bits) if is_w else packed,
                     "bytes_float32": 4 * n})
    qrows = [r for r in rows if r["kind"] != "float"]
    qn = sum(r["numel"] for r in qrows)
    weights = [r for r in rows if len(r["shape"]) >= 2]
    total = {
        "bytes": sum(r["bytes"] for r in rows),
        f"bytes_{reference_bits}bit": sum(r[f"bytes_{reference_bits}bit"] for r in rows),
        "bytes_float32": sum(r["bytes_float32"] for r in rows),
        "weights": sum(r["numel"] for r in weights),
        "weights_quantized": qn,
        # code bits per quantized weight, and with the codebooks/scales counted in
        "avg_bits": sum(r["bits"] * r["numel"] for r in qrows) / qn if qn else 32.0,
        "avg_bits_with_tables": 8 * sum(r["bytes"] for r in qrows) / qn if qn else 32.0,
        # over every weight of 2+ dimensions, float ones at 32 bits
        "avg_bits_all_weights": 8 * sum(r["bytes"] for r in weights) / max(1, sum(r["numel"] for r in weights)),
    }
    if file_bytes is None:
        file_bytes = serialized_size(obj)
    ref = reference_object(obj, reference_bits)
    total["file_bytes"] = int(file_bytes)
    total[f"file_bytes_{reference_bits}bit"] = serialized_size(ref)
    # relative size of the weights (the blobs), and of the files (the same plus a few KiB of table)
    total[f"vs_{reference_bits}bit"] = total["bytes"] / total[f"bytes_{reference_bits}bit"] - 1.0
    total[f"vs_{reference_bits}bit_file"] = total["file_bytes"] / total[f"file_bytes_{reference_bits}bit"] - 1.0
    return {"method": obj.get("method"), "reference_bits": reference_bits, "tensors": rows, "total": total}


def format_report(report: Dict) -> str:
    """The size report as a text table (one line per tensor, then the totals)."""
    rb = report["reference_bits"]
    t = report["total"]
    lines = [f"{'tensor':<48} {'shape':>14} {'bits':>5} {'packed':>10} {f'{rb}-bit':>10} {'float32':>10}"]
    for r in report["tensors"]:
        lines.append(f"{r['name']:<48} {'x'.join(map(str, r['shape'])) or '-':>14} {str(r['bits']):>5} "
                     f"{r['bytes']:>10} {r[f'bytes_{rb}bit']:>10} {r['bytes_float32']:>10}")
    lines.append(f"{'total':<48} {'':>14} {t['avg_bits']:>5.2f} {t['bytes']:>10} {t[f'bytes_{rb}bit']:>10} "
                 f"{t['bytes_float32']:>10}")
    lines.append(f"weights: {t['bytes']} bytes vs {t[f'bytes_{rb}bit']} for the {rb}-bit model "
                 f"({100 * t[f'vs_{rb}bit']:+.2f}%), {t['bytes_float32']} in float32 (the dequantized model); "
                 f"{t['avg_bits']:.2f} bits per quantized weight, {t['avg_bits_with_tables']:.2f} with its codebook "
                 f"or scales")
    lines.append(f"file: {t['file_bytes']} bytes vs {t[f'file_bytes_{rb}bit']} for the {rb}-bit model "
                 f"({100 * t[f'vs_{rb}bit_file']:+.2f}%)")
    return "\n".join(lines)


def file_size(path: PathLike) -> int:
    return os.path.getsize(path)
