"""A 2000-utterance slice of asr1's full training set (and 150 dev utterances) with its
features, small enough to travel to a GPU machine (about 50 MB): the input of gpu_train.sh.

    python benchmarks/gpu_subset.py            # after egs/assistant/asr1/run.sh (full size)

Writes $GPU_DIR (default benchmarks/out/gpu)/{data/train,data/dev,lang}; storage paths are
relative to the repository root, where gpu_train.sh runs."""
import os, random, shutil
from pathlib import Path
from lhotse import CutSet
from lhotse.features.io import LilcomChunkyWriter
from lhotse.utils import fastcopy
GPU_DIR = os.environ.get("GPU_DIR", "benchmarks/out/gpu")
root = Path.cwd()
os.chdir("egs/assistant/asr1")
src = Path("data/full/fbank")
out = root / GPU_DIR / "data"; out.mkdir(parents=True, exist_ok=True)
for part, n in (("train", 2000), ("dev", 150)):
    cuts = CutSet.from_file(src / part / "cuts.jsonl.gz").to_eager()
    ids = sorted(c.id for c in cuts); random.Random(0).shuffle(ids); keep = set(ids[:n])
    d = out / part; d.mkdir(exist_ok=True)
    new = []
    with LilcomChunkyWriter(str(d / "feats.lca")) as w:
        for c in cuts:
            if c.id not in keep: continue
            f = c.load_features()
            key = w.write(c.id, f)
            new.append(fastcopy(c, features=fastcopy(c.features, storage_type=w.name, storage_path=f"{GPU_DIR}/data/{part}/feats.lca", storage_key=key), recording=None))
    CutSet.from_cuts(new).to_file(d / "cuts.jsonl.gz")
    if (src / part / "cmvn.json").exists(): shutil.copy(src / part / "cmvn.json", d / "cmvn.json")
    print(part, len(new), sum(c.duration for c in new) / 3600, "h")
lang = root / GPU_DIR / "lang"; lang.mkdir(exist_ok=True)
for f in ("bpe.model", "tokens.txt", "lang.json", "words.txt", "lexicon.txt"):
    shutil.copy(Path("data/full/lang_bpe_100") / f, lang / f)
