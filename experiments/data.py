"""MNIST and CIFAR-10 loaders returning flattened float32 arrays in [0, 1], and their downloader.

Data directory resolution (``data_dir``), the same for every loader and command:

1. the ``data_dir`` argument (``--data-dir`` on the command lines), else
2. the environment variable ``MEANFIELD_DATA_DIR``, else
3. ``./data``, relative to the current working directory (never a folder next to the installed
   package, never a user cache).

The directory is the one that *contains* ``mnist/`` and ``cifar10/`` (e.g. ``../shared/data``).
For convenience ``data_dir`` may also point straight at a folder holding the MNIST ``.gz`` files
(for ``load_mnist``) or the CIFAR-10 pickle batches (for ``load_cifar10``).

Getting the data (network needed)::

    python -m experiments.data --download [--data-dir DIR] [mnist] [cifar10]

fetches the official files into ``DIR/mnist`` and ``DIR/cifar10`` (default ``DIR``: as above),
each verified against its official MD5 before it is kept. Without ``--download`` the command checks
what is there. ``download=True`` does the same from Python.

Layouts understood:

- ``mnist/``: the four official ``*-idx*-ubyte.gz`` files; their official MD5s are verified.
- ``cifar10/cifar-10-batches-py/``: exactly the official batches ``data_batch_1`` ...
  ``data_batch_5`` and ``test_batch`` (official MD5s verified; all six must be there); or
  ``cifar10/cifar-10-batches-py-subset/``, the shared 5,000-image subset: exactly
  ``data_batch_1_first4000`` and ``test_batch_first1000`` (verified against the subset's MD5s).
  A folder holding any official batch name is read as the official set, otherwise as the subset.
  Batches are read only under these exact names: any other file in the folder (a stray copy such as
  ``data_batch_1_first4000.bak``, the subset's files next to the official ones, ...) is ignored with
  a warning naming it, so it can never enter the data; ``batches.meta`` and ``readme.html`` are
  ignored silently.

``verify=False`` skips the MD5 checks (for a re-encoded copy, e.g. batches pickled under Python 3
with str keys); every file is then still checked for structure: shapes, a uint8 pixel range,
labels of the right length in 0..9. Unreadable files raise ``ValueError`` naming the file. Pickles
are read with an unpickler that accepts only what a CIFAR-10 batch holds (numpy arrays, lists,
bytes, str), so a stray pickle cannot run code. Decoding takes well under a second per dataset, so
nothing is cached and nothing is ever written into a data directory unless downloading.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import pickle
import shlex
import sys
import tarfile
import tempfile
import urllib.request
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meanfield.cli.args import one_of, path_problem, returns_exit_code, run_main

__all__ = ["Dataset", "load_mnist", "load_cifar10", "load_dataset", "resolve_data_dir",
           "DATASETS", "data_dir_arg", "parse_args", "main"]

ENV_VAR = "MEANFIELD_DATA_DIR"
DEFAULT_DATA_DIR = Path("data")

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
CIFAR10_NOT_BATCHES = frozenset({"batches.meta", "readme.html"})  # shipped alongside, not data
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_TAR_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_PIXELS = 3 * 32 * 32
N_CLASSES = 10


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
    """The data directory: ``data_dir``, else ``$MEANFIELD_DATA_DIR``, else ``./data``.

    Parameters
    ----------
    data_dir : str or path-like, optional
        Folder containing ``mnist/`` and ``cifar10/`` (or one data set's files); ``~`` expanded.

    Returns
    -------
    Path
        The folder, relative to the working directory unless given absolute.
    """
    if data_dir is None:
        data_dir = os.environ.get(ENV_VAR) or DEFAULT_DATA_DIR
    return Path(os.path.expanduser(data_dir))   # '~nobody' stays as it is (Path.expanduser raises)


def data_dir_arg(text: str) -> str:
    """argparse type of ``--data-dir``: a usable path that is a folder if it exists (whether it
    holds the data is the loaders' question, with their download hint)."""
    folder = os.path.expanduser(text)
    problem = path_problem(text) or (f"{text!r}, which is not a folder"
                                     if os.path.exists(folder) and not os.path.isdir(folder) else None)
    if problem:
        raise argparse.ArgumentTypeError(f"expected a folder, got {problem}")
    return text


def _download_hint(name: str, root: Path) -> str:
    cmd = f"python -m experiments.data --download --data-dir {shlex.quote(str(root))} {name}"
    return (f"Download it with `{cmd}` (network needed), or point --data-dir / data_dir= or the "
            f"environment variable {ENV_VAR} at a folder that holds {name}/.")


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, expected: str, source: str | None = None) -> None:
    got = _md5(path)
    if got != expected:
        raise ValueError(f"checksum mismatch for {source or path}: md5 {got}, expected {expected} "
                         "(corrupt or not the official file; delete it and download it again)")


def _fetch(url: str, dest: Path, md5: str) -> None:
    """Download ``url`` to ``dest`` through ``dest.part``; ``dest`` appears only with the right MD5."""
    from tqdm import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(part, "wb") as f:
            size = r.headers.get("Content-Length")
            with tqdm(total=int(size) if size else None, unit="B", unit_scale=True,
                      desc=dest.name, leave=False) as bar:
                for chunk in iter(lambda: r.read(1 << 20), b""):
                    f.write(chunk)
                    bar.update(len(chunk))
        _verify(part, md5, url)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    part.replace(dest)


# ----------------------------------------------------------------------------- MNIST

def _read_idx(path: Path, magic: int) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise ValueError(f"{path}: not a readable gzip IDX file ({type(e).__name__}: {e})") from e
    got = int.from_bytes(raw[:4], "big")
    if len(raw) < 4 or got != magic:
        raise ValueError(f"{path}: IDX magic number {got}, expected {magic}")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: IDX header cut short ({len(raw)} bytes)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: {data.size} bytes of data, header says shape {shape}")
    return data.reshape(shape)


def _mnist_split(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    images_path = folder / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = folder / f"{prefix}-labels-idx1-ubyte.gz"
    x = _read_idx(images_path, 2051)
    y = _read_idx(labels_path, 2049)
    if x.shape[1:] != (28, 28):
        raise ValueError(f"{images_path}: images of shape {x.shape[1:]}, expected (28, 28)")
    return x, _labels(y, len(x), labels_path)


def _mnist_dir(root: Path) -> Path:
    if (root / "train-images-idx3-ubyte.gz").exists():
        return root
    return root / "mnist"


def _download_mnist(folder: Path, names) -> None:
    for name in names:
        errors = []
        for base in MNIST_URLS:
            try:
                _fetch(base + name, folder / name, MNIST_MD5[name])
                break
            except (OSError, ValueError) as e:  # URLError is an OSError; ValueError: wrong file
                errors.append(f"{base}: {e}")
        else:
            raise OSError(f"could not download {name}: " + "; ".join(errors))


def load_mnist(data_dir: str | os.PathLike | None = None, *, download: bool = False,
               verify: bool = True) -> Dataset:
    """Full MNIST (60,000 train, 10,000 test), 784 features in [0, 1].

    Parameters
    ----------
    data_dir : str or path-like, optional
        Folder containing ``mnist/`` (or the four ``.gz`` files); see ``resolve_data_dir``.
    download : bool
        Fetch missing files from the official mirrors (MD5-verified) into ``<data_dir>/mnist``.
    verify : bool
        Check the official MD5s (default); structure and labels are checked either way.

    Returns
    -------
    Dataset
        ``x_*`` float32 (N, 784) with pixel k stored as k/255, ``y_*`` int64 in 0..9.

    Raises
    ------
    FileNotFoundError
        Files missing (the message gives the download command); ``OSError`` if a download fails.
    ValueError
        A file with the wrong checksum or structure (the message names it).
    """
    root = resolve_data_dir(data_dir)
    folder = _mnist_dir(root)
    missing = [n for n in MNIST_MD5 if not (folder / n).exists()]
    if missing and download:
        _download_mnist(folder, missing)
        missing = []
    if missing:
        raise FileNotFoundError(
            f"MNIST not found in {folder}: expected the official files {sorted(MNIST_MD5)} "
            f"(missing {missing}). {_download_hint('mnist', root)}")
    if verify:
        for name, md5 in MNIST_MD5.items():
            _verify(folder / name, md5)
    xtr, ytr = _mnist_split(folder, "train")
    xte, yte = _mnist_split(folder, "t10k")
    return Dataset("mnist", _to_float(xtr), ytr, _to_float(xte), yte)


def _to_float(x: np.ndarray) -> np.ndarray:
    return (x.reshape(len(x), -1).astype(np.float32) / np.float32(255.0))


def _labels(labels, n: int, path: Path) -> np.ndarray:
    """Labels as int64 (n,), each in 0..9; else ValueError naming the file."""
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"{path}: {y.shape} labels for {n} images (expected one per image)")
    if n and not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{path}: labels of type {y.dtype}, expected integers 0..{N_CLASSES - 1}")
    if n and (y.min() < 0 or y.max() >= N_CLASSES):
        raise ValueError(f"{path}: labels range over {y.min()}..{y.max()}, expected 0..{N_CLASSES - 1}")
    return y.astype(np.int64)


# ----------------------------------------------------------------------------- CIFAR-10

# what a CIFAR-10 batch may reference: numpy arrays as pickled by numpy 1 and 2, and the bytes
# encoder that Python 3 uses for bytes at pickle protocols below 3
_BATCH_GLOBALS = frozenset({
    ("_codecs", "encode"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
})


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _BATCH_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not part of a CIFAR-10 batch")
        return super().find_class(module, name)


def _batch_entry(d: dict, key: str, path: Path):
    """``d[b'key']`` (pickled by Python 2, the official files) or ``d['key']`` (Python 3)."""
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise ValueError(f"{path}: no {key!r} entry in the batch (keys {sorted(map(repr, d))})")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Pixels uint8 (N, 3072) and labels int64 (N,) of one python-version batch, validated."""
    try:
        with open(path, "rb") as f:
            d = _BatchUnpickler(f, encoding="bytes").load()
    except Exception as e:  # truncated, not a pickle, foreign objects: all name the file
        raise ValueError(f"{path}: not a readable CIFAR-10 python batch "
                         f"({type(e).__name__}: {e})") from e
    if not isinstance(d, dict):
        raise ValueError(f"{path}: a CIFAR-10 batch is a dict, this file holds a {type(d).__name__}")
    x = np.asarray(_batch_entry(d, "data", path))
    if x.ndim != 2 or x.shape[1] != CIFAR10_PIXELS or len(x) == 0:
        raise ValueError(f"{path}: data has shape {x.shape}, expected (N, {CIFAR10_PIXELS}) with N >= 1")
    if not np.issubdtype(x.dtype, np.integer) or x.min() < 0 or x.max() > 255:
        raise ValueError(f"{path}: pixels must be integers in 0..255 (dtype {x.dtype})")
    return x.astype(np.uint8), _labels(_batch_entry(d, "labels", path), len(x), path)


def _cifar_folder(root: Path) -> Path | None:
    known = set(CIFAR10_OFFICIAL_MD5) | set(CIFAR10_SUBSET_MD5)
    for cand in (root, root / "cifar-10-batches-py", root / "cifar-10-batches-py-subset",
                 root / "cifar10" / "cifar-10-batches-py",
                 root / "cifar10" / "cifar-10-batches-py-subset"):
        if any((cand / n).is_file() for n in known):
            return cand
    return None


def _cifar_files(folder: Path) -> tuple[list[Path], list[Path], dict]:
    """Train and test batch paths of the set in ``folder`` and its MD5s; warns about other files."""
    names = {p.name for p in folder.iterdir() if p.is_file()}
    official = bool(names & set(CIFAR10_OFFICIAL_MD5))
    md5 = CIFAR10_OFFICIAL_MD5 if official else CIFAR10_SUBSET_MD5
    kind = "official CIFAR-10 batches" if official else "CIFAR-10 subset"
    missing = [n for n in md5 if n not in names]
    if missing:
        raise FileNotFoundError(f"{folder}: incomplete {kind}: missing {missing} (expected exactly "
                                f"{list(md5)})")
    for extra in sorted(names - set(md5) - CIFAR10_NOT_BATCHES):
        warnings.warn(f"{folder / extra}: ignored (not one of the {kind} {list(md5)})", stacklevel=3)
    train = [folder / n for n in md5 if n.startswith("data_batch")]
    test = [folder / n for n in md5 if n.startswith("test_batch")]
    return train, test, md5


def _download_cifar10(root: Path) -> None:
    target = root if root.name == "cifar10" else root / "cifar10"
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        tar = Path(tmp) / "cifar-10-python.tar.gz"
        _fetch(CIFAR10_URL, tar, CIFAR10_TAR_MD5)
        with tarfile.open(tar) as t:
            t.extractall(target, filter="data")


def _stack(batches) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*batches)
    return np.concatenate(xs), np.concatenate(ys)


def load_cifar10(data_dir: str | os.PathLike | None = None, *, download: bool = False,
                 verify: bool = True) -> Dataset:
    """CIFAR-10 python batches (official set or the shared subset), 3072 features in [0, 1].

    Features keep the official order (red plane, green, blue; each 32x32 row-major).

    Parameters
    ----------
    data_dir : str or path-like, optional
        Folder containing ``cifar10/`` (or a batch folder); see ``resolve_data_dir``.
    download : bool
        When no batch folder is found, fetch the official archive (MD5-verified) and unpack it
        into ``<data_dir>/cifar10/cifar-10-batches-py``.
    verify : bool
        Check the MD5s of the official or subset files (default); structure and labels are
        checked either way.

    Returns
    -------
    Dataset
        ``x_*`` float32 (N, 3072), ``y_*`` int64 in 0..9: 50,000 / 10,000 images (official) or
        4,000 / 1,000 (subset).

    Raises
    ------
    FileNotFoundError
        No batch folder (the message gives the download command), or an incomplete set.
    ValueError
        A batch with the wrong checksum, unreadable, or with bad data or labels (names the file).
    """
    root = resolve_data_dir(data_dir)
    folder = _cifar_folder(root)
    if folder is None and download:
        _download_cifar10(root)
        folder = _cifar_folder(root)
    if folder is None:
        raise FileNotFoundError(
            f"CIFAR-10 not found under {root}: expected cifar10/cifar-10-batches-py/ with "
            f"{list(CIFAR10_OFFICIAL_MD5)} (or the subset folder cifar-10-batches-py-subset/ with "
            f"{list(CIFAR10_SUBSET_MD5)}). {_download_hint('cifar10', root)}")
    train, test, md5 = _cifar_files(folder)
    if verify:
        for path in train + test:
            _verify(path, md5[path.name])
    xtr, ytr = _stack(_read_cifar_batch(p) for p in train)
    xte, yte = _stack(_read_cifar_batch(p) for p in test)
    return Dataset("cifar10", _to_float(xtr), ytr, _to_float(xte), yte)


DATASETS = {"mnist": load_mnist, "cifar10": load_cifar10}


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *,
                 download: bool = False, verify: bool = True) -> Dataset:
    """Load a data set by name (``"mnist"`` or ``"cifar10"``); arguments as for its loader."""
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {name!r}")
    return DATASETS[name](data_dir, download=download, verify=verify)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.data",
        description="Check the data sets (default) or download the missing official files "
                    f"(--download). Data folder: --data-dir, else ${ENV_VAR}, else ./data.")
    p.add_argument("names", nargs="*", metavar="NAME", type=one_of(DATASETS, "data set"),
                   help=f"{' or '.join(DATASETS)} (default: both)")
    p.add_argument("--download", action="store_true", help="fetch missing files (network needed)")
    p.add_argument("--data-dir", type=data_dir_arg, default=None,
                   help="folder that holds (or will hold) mnist/ and cifar10/")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """The validated flags of ``main``, checked before any file is read (bad input: an
    ``error:`` line naming the argument, exit status 2 as ``SystemExit``)."""
    return build_parser().parse_args(argv)


@returns_exit_code
def main(argv=None) -> int:
    """``python -m experiments.data [--download] [--data-dir DIR] [mnist] [cifar10]``."""
    args = parse_args(argv)
    root = resolve_data_dir(args.data_dir)
    for name in args.names or list(DATASETS):
        try:
            ds = load_dataset(name, root, download=args.download)
        except (FileNotFoundError, ValueError) as e:  # missing or bad files: the user's to fix
            print(f"error: {e}", file=sys.stderr)
            return 2
        except OSError as e:  # a failed download
            print(f"error: {e}", file=sys.stderr)
            return 1
        n = len(ds.x_train) + len(ds.x_test)
        subset = f" (the {n:,}-image subset, not the official 60,000)" if name == "cifar10" and n < 60000 else ""
        print(f"{name}: {len(ds.x_train)} train and {len(ds.x_test)} test images of "
              f"{ds.n_features} features under {root}{subset} (checksums verified)")
    return 0


if __name__ == "__main__":
    run_main(main)
