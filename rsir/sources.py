"""Where datasets come from: the public benchmarks (local copy or verified download), the
built-in synthetic data, and user files in any format ``rsir.data`` and ``rsir.logs`` read.

The benchmark directory is ``--data-dir`` or ``$RSIR_DATA_DIR``; nothing here bakes in a path.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rsir.data import read_sequences
from rsir.datasets import SequenceDataset
from rsir.errors import DataError
from rsir.synthetic import synthetic_dataset

ICLREC_RAW = "https://raw.githubusercontent.com/salesforce/ICLRec/2890e6c3ff6a22c6699fc19cb863b66786c1cde4/data/"


@dataclass(frozen=True)
class Benchmark:
    """A public benchmark file and the sha256 it must have (PROVENANCE.md)."""

    file: str
    source: str
    sha256: str


BENCHMARKS: dict[str, Benchmark] = {
    "beauty": Benchmark("beauty.txt", "Beauty.txt", "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8"),
    "sports": Benchmark("sports.txt", "Sports_and_Outdoors.txt",
                        "2a095e0648872beb9982408958290f5d655db5be2911c3756b5446de9f0b8de2"),
    "toys": Benchmark("toys.txt", "Toys_and_Games.txt",
                      "176c680c688d497598c4a89a03b402c0fe78d795e5db335c2e78dd5f2d778a3f"),
    "yelp": Benchmark("yelp.txt", "Yelp.txt", "724b219106b81dd2349027da997334ddb6da9fe2f152ad6e0d97a93170f7caed"),
}
SYNTHETIC = "synthetic"


def data_dir(explicit: str | Path | None = None) -> Path | None:
    """``explicit`` if given, else ``$RSIR_DATA_DIR``, else None."""
    value = explicit or os.environ.get("RSIR_DATA_DIR")
    return Path(value).expanduser() if value else None


def load_dataset(spec: str, data_dir_: str | Path | None = None, k_core: int = 5,
                 num_items: int | None = None) -> SequenceDataset:
    """Load a dataset named by ``spec``: a benchmark name, ``synthetic`` or a file path."""
    if spec in BENCHMARKS:
        return load_benchmark(spec, data_dir_)
    if spec == SYNTHETIC:
        return synthetic_dataset()
    path = Path(spec)
    if not path.exists():
        raise DataError(f"{spec!r} is neither a benchmark ({', '.join(BENCHMARKS)}), "
                        f"'{SYNTHETIC}', nor an existing file")
    return SequenceDataset.read(path, k_core=k_core, num_items=num_items)


def load_benchmark(name: str, data_dir_: str | Path | None = None) -> SequenceDataset:
    root = data_dir(data_dir_)
    if root is None:
        raise DataError(f"benchmark {name!r}: set RSIR_DATA_DIR or pass --data-dir "
                        f"(or fetch it with `rsir data download {name} --data-dir DIR`)")
    path = root / BENCHMARKS[name].file
    if not path.is_file():
        raise DataError(f"benchmark {name!r} not found; fetch it with `rsir data download {name} "
                        f"--data-dir {root}`", path)
    return SequenceDataset.from_parsed(read_sequences(path), name)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(name: str, target_dir: str | Path, base_url: str | None = None, timeout: float = 60) -> Path:
    """Fetch a benchmark file, verify its sha256, and only then move it into ``target_dir``.

    ``base_url`` (or ``$RSIR_DATA_URL``) replaces the public source, e.g. a mirror.
    """
    if name not in BENCHMARKS:
        raise DataError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    bench = BENCHMARKS[name]
    base = base_url or os.environ.get("RSIR_DATA_URL") or ICLREC_RAW
    url = base.rstrip("/") + "/" + bench.source
    target = Path(target_dir).expanduser()
    target.mkdir(parents=True, exist_ok=True)
    final = target / bench.file
    tmp = target / f".{bench.file}.part"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, tmp.open("wb") as out:
            while block := response.read(1 << 20):
                out.write(block)
    except (urllib.error.URLError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(f"download of {url} failed: {exc}") from None
    digest = sha256_file(tmp)
    if digest != bench.sha256:
        tmp.unlink(missing_ok=True)
        raise DataError(f"checksum mismatch for {url}: got {digest}, expected {bench.sha256}")
    tmp.replace(final)
    return final
