"""MNIST and CIFAR-10 loaders returning flattened float32 arrays in [0, 1].

Data directory resolution (``data_dir``):

1. the ``data_dir`` argument, else
2. the environment variable ``MEANFIELD_DATA_DIR``, else
3. ``~/.cache/meanfield/data``.

The directory is the one that *contains* ``mnist/`` and ``cifar10/`` (e.g. ``../shared/data``).
For convenience ``data_dir`` may also point straight at a folder holding the MNIST ``.gz`` files
(for ``load_mnist``) or the CIFAR-10 pickle batches (for ``load_cifar10``).

Layouts understood:

- ``mnist/``: the four official ``*-idx*-ubyte.gz`` files; their official MD5s are verified.
- ``cifar10/cifar-10-batches-py/``: the official python batches ``data_batch_1..5``, ``test_batch``
  (official MD5s verified); or ``cifar10/cifar-10-batches-py-subset/`` (the shared 5,000-image
  subset: ``data_batch_*`` and ``test_batch*`` are globbed; files with the subset's known names are
  verified against the subset's MD5s, never against the official ones).

``download=True`` fetches the official files into ``<data_dir>/mnist`` or ``<data_dir>/cifar10``
when they are missing (network needed); otherwise a missing file raises ``FileNotFoundError``
naming the expected files. Decoding takes well under a second per dataset, so nothing is cached and
nothing is ever written into a data directory unless ``download=True``.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Dataset", "load_mnist", "load_cifar10", "load_dataset", "resolve_data_dir",
           "DATASETS"]

ENV_VAR = "MEANFIELD_DATA_DIR"
DEFAULT_DATA_DIR = Path("~/.cache/meanfield/data")

MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
# yann.lecun.com often refuses automated downloads; this mirror serves the identical files.
MNIST_URLS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
              "http://yann.lecun.com/exdb/mnist/")

CIFAR10_OFFICIAL_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
CIFAR10_SUBSET_MD5 = {
    "data_batch_1_first4000": "3afd31511f729c194f89376cd3ac39dd",
    "test_batch_first1000": "567f8d7c06c27887b0addf50795f641a",
}
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_TAR_MD5 = "c58f30108f718f92721af3b95e74349a"


@dataclass(frozen=True, eq=False)
class Dataset:
    """A classification data set: ``x_*`` float32 (N, features) in [0, 1], ``y_*`` int64 (N,)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: argument, else ``$MEANFIELD_DATA_DIR``, else ``~/.cache/meanfield/data``."""
    if data_dir is None:
        data_dir = os.environ.get(ENV_VAR) or DEFAULT_DATA_DIR
    return Path(data_dir).expanduser()


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, expected: str) -> None:
    got = _md5(path)
    if got != expected:
        raise ValueError(f"checksum mismatch for {path}: md5 {got}, expected {expected} "
                         "(corrupt or not the official file; delete it and re-download)")


def _download(url: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
        shutil.copyfileobj(r, f)
    tmp.replace(dest)


def _read_idx(path: Path, magic: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    got = int.from_bytes(raw[:4], "big")
    if got != magic:
        raise ValueError(f"{path}: IDX magic number {got}, expected {magic}")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: {data.size} bytes of data, header says shape {shape}")
    return data.reshape(shape)


def _mnist_dir(root: Path) -> Path:
    if (root / "train-images-idx3-ubyte.gz").exists():
        return root
    return root / "mnist"


def load_mnist(data_dir: str | os.PathLike | None = None, *, download: bool = False) -> Dataset:
    """Full MNIST (60,000 train, 10,000 test), 784 features in [0, 1], official MD5s verified."""
    folder = _mnist_dir(resolve_data_dir(data_dir))
    missing = [n for n in MNIST_MD5 if not (folder / n).exists()]
    if missing and download:
        for name in missing:
            errors = []
            for base in MNIST_URLS:
                try:
                    _download(base + name, folder / name)
                    break
                except OSError as e:  # URLError is an OSError
                    errors.append(f"{base}: {e}")
            else:
                raise OSError(f"could not download {name}: " + "; ".join(errors))
        missing = []
    if missing:
        raise FileNotFoundError(
            f"MNIST not found in {folder}: expected the official files {sorted(MNIST_MD5)} "
            f"(missing {missing}). Pass data_dir=, set {ENV_VAR}, or use download=True.")
    for name, md5 in MNIST_MD5.items():
        _verify(folder / name, md5)
    xtr = _read_idx(folder / "train-images-idx3-ubyte.gz", 2051)
    ytr = _read_idx(folder / "train-labels-idx1-ubyte.gz", 2049)
    xte = _read_idx(folder / "t10k-images-idx3-ubyte.gz", 2051)
    yte = _read_idx(folder / "t10k-labels-idx1-ubyte.gz", 2049)
    return Dataset("mnist", _to_float(xtr), ytr.astype(np.int64), _to_float(xte),
                   yte.astype(np.int64))


def _to_float(x: np.ndarray) -> np.ndarray:
    return (x.reshape(len(x), -1).astype(np.float32) / np.float32(255.0))


def _cifar_folder(root: Path) -> Path | None:
    for cand in (root, root / "cifar-10-batches-py", root / "cifar-10-batches-py-subset",
                 root / "cifar10" / "cifar-10-batches-py",
                 root / "cifar10" / "cifar-10-batches-py-subset"):
        if any(cand.glob("data_batch_*")) and any(cand.glob("test_batch*")):
            return cand
    return None


def _load_cifar_batches(files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for path in files:
        expected = CIFAR10_OFFICIAL_MD5.get(path.name) or CIFAR10_SUBSET_MD5.get(path.name)
        if expected is not None:
            _verify(path, expected)
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        x = np.asarray(d[b"data"], dtype=np.uint8)
        if x.ndim != 2 or x.shape[1] != 3072:
            raise ValueError(f"{path}: data has shape {x.shape}, expected (N, 3072)")
        xs.append(x)
        ys.append(np.asarray(d[b"labels"], dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def load_cifar10(data_dir: str | os.PathLike | None = None, *, download: bool = False) -> Dataset:
    """CIFAR-10 python batches (official set or the shared subset), 3072 features in [0, 1].

    Features keep the official order (red plane, green, blue; each 32x32 row-major).
    """
    root = resolve_data_dir(data_dir)
    folder = _cifar_folder(root)
    if folder is None and download:
        target = (root if root.name == "cifar10" else root / "cifar10")
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target) as tmp:
            tar = Path(tmp) / "cifar-10-python.tar.gz"
            _download(CIFAR10_URL, tar)
            _verify(tar, CIFAR10_TAR_MD5)
            with tarfile.open(tar) as t:
                t.extractall(target, filter="data")
        folder = _cifar_folder(root)
    if folder is None:
        raise FileNotFoundError(
            f"CIFAR-10 not found under {root}: expected cifar10/cifar-10-batches-py/ with "
            f"{sorted(CIFAR10_OFFICIAL_MD5)} (or the subset folder cifar-10-batches-py-subset/ with "
            f"data_batch_* and test_batch*). Pass data_dir=, set {ENV_VAR}, or use download=True.")
    train = sorted(p for p in folder.glob("data_batch_*") if not p.name.endswith(".part"))
    test = sorted(folder.glob("test_batch*"))
    xtr, ytr = _load_cifar_batches(train)
    xte, yte = _load_cifar_batches(test)
    return Dataset("cifar10", _to_float(xtr), ytr, _to_float(xte), yte)


DATASETS = {"mnist": load_mnist, "cifar10": load_cifar10}


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *,
                 download: bool = False) -> Dataset:
    """Load a data set by name (``"mnist"`` or ``"cifar10"``)."""
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {name!r}")
    return DATASETS[name](data_dir, download=download)
