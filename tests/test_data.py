"""Loaders against the shared data (label counts and headers from its README) and error paths.

The shared data must be there (CI has ../shared/data): a missing folder fails these tests.
CIFAR-10 folder rules: tests/test_data_cifar.py; download, CLI and folder resolution:
tests/test_data_download.py.
"""
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from experiments import data
from experiments.store import Store

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# From ../shared/data/README.md (independent of the loader).
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_mnist_shapes_counts_range():
    d = data.load_mnist(SHARED)
    assert d.name == "mnist"
    assert d.x_train.shape == (60000, 784) and d.x_test.shape == (10000, 784)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert np.bincount(d.y_train).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(d.y_test).tolist() == MNIST_TEST_COUNTS
    assert d.x_train.min() == 0.0 and d.x_train.max() == 1.0
    # pixel values are k/255 exactly
    k = d.x_test[:50] * 255
    assert np.allclose(k, np.round(k), atol=1e-4)


def test_mnist_dir_may_point_at_mnist_folder_and_env_var(monkeypatch):
    a = data.load_mnist(SHARED / "mnist")
    monkeypatch.setenv("MEANFIELD_DATA_DIR", str(SHARED))
    b = data.load_mnist()
    np.testing.assert_array_equal(a.y_test, b.y_test)


def test_cifar10_subset():
    d = data.load_cifar10(SHARED)
    assert d.x_train.shape == (4000, 3072) and d.x_test.shape == (1000, 3072)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert set(np.unique(d.y_train)) == set(range(10))
    # first labels of the official data_batch_1 / test_batch
    assert d.y_train[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert d.y_test[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0


def test_missing_files_error_names_expected_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz"):
        data.load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        data.load_cifar10(tmp_path)
    with pytest.raises(ValueError, match="dataset"):
        data.load_dataset("svhn", tmp_path)


def test_checksum_mismatch_is_detected(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in data.MNIST_MD5:
        shutil.copy(SHARED / "mnist" / name, folder / name)
    # a valid gzip with one label changed: decodes fine but is not the official file
    with gzip.open(SHARED / "mnist" / "t10k-labels-idx1-ubyte.gz") as f:
        raw = bytearray(f.read())
    raw[8] = (raw[8] + 1) % 10
    (folder / "t10k-labels-idx1-ubyte.gz").chmod(0o644)
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(bytes(raw))
    with pytest.raises(ValueError, match="checksum mismatch.*t10k-labels"):
        data.load_mnist(tmp_path)
    assert data.load_mnist(tmp_path, verify=False).y_test[0] == (7 + 1) % 10  # structure is fine


def test_mnist_structure_is_checked_without_checksums(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in data.MNIST_MD5:
        shutil.copy(SHARED / "mnist" / name, folder / name)
        (folder / name).chmod(0o644)
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    official = gzip.decompress(labels.read_bytes())
    assert official[8] == 7  # the first test label
    cases = [
        (official[:8] + bytes([10]) + official[9:], r"labels range over 0\.\.10, expected 0\.\.9"),
        (official[:-1], r"9999 bytes of data, header says shape \(10000,\)"),
        (official[:4] + (9999).to_bytes(4, "big") + official[8:-1], r"\(9999,\) labels for 10000 images"),
        (b"\x00\x00\x08\x03" + official[4:], "IDX magic number 2051, expected 2049"),
    ]
    for raw, match in cases:
        labels.write_bytes(gzip.compress(raw))
        with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz: " + match):
            data.load_mnist(tmp_path, verify=False)
    labels.write_bytes(gzip.compress(official)[:100])  # a truncated gzip stream
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz: not a readable gzip IDX file"):
        data.load_mnist(tmp_path, verify=False)
    labels.write_bytes(gzip.compress(official))
    assert data.load_mnist(tmp_path, verify=False).y_test[0] == 7


def test_store_roundtrip_and_idempotence(tmp_path):
    cols = {"name": "TEXT", "x": "REAL", "seed": "INTEGER", "acc": "REAL"}
    path = tmp_path / "s.sqlite"
    with Store(path, "runs", cols, key=("name", "x", "seed")) as st:
        assert st.insert({"name": "a", "x": 1.0 + 0.1 * 3, "seed": 0, "acc": 0.5})
        assert not st.insert({"name": "a", "x": 1.3, "seed": 0, "acc": 0.7})  # same key
        assert st.insert({"name": "a", "x": 1.3, "seed": 1, "acc": 0.6})
        assert st.is_done(("a", 1.3, 0)) and st.is_done({"name": "a", "x": 1.3, "seed": 1})
        assert not st.is_done(("a", 1.3, 2))
    with Store(path, "runs", cols, key=("name", "x", "seed")) as st:  # reopen
        assert len(st) == 2
        assert st.done_keys() == {("a", 1.3, 0), ("a", 1.3, 1)}
        assert [r["acc"] for r in st.rows()] == [0.5, 0.6]
        assert st.rows(seed=1) == [{"name": "a", "x": 1.3, "seed": 1, "acc": 0.6}]


def test_store_rejects_bad_specs(tmp_path):
    path = tmp_path / "s.sqlite"
    with pytest.raises(ValueError, match="type must be one of"):
        Store(path, "t", {"a": "FLOAT"}, key=("a",))
    with pytest.raises(ValueError, match="key must be"):
        Store(path, "t", {"a": "REAL"}, key=("b",))
    Store(path, "t", {"a": "REAL", "b": "TEXT"}, key=("a",)).close()
    with pytest.raises(ValueError, match="has columns"):
        Store(path, "t", {"a": "REAL"}, key=("a",))
    with pytest.raises(ValueError, match="unique keys"):
        Store(path, "t", {"a": "REAL", "b": "TEXT"}, key=("a", "b"))
    with Store(path, "t", {"a": "REAL", "b": "TEXT"}, key=("a",)) as st:
        with pytest.raises(ValueError, match="unknown columns"):
            st.insert({"a": 1.0, "c": 2})
        with pytest.raises(ValueError, match="missing"):
            st.insert({"b": "x"})


def test_store_insert_many_is_one_transaction(tmp_path):
    cols = {"name": "TEXT", "seed": "INTEGER", "acc": "REAL"}
    with Store(tmp_path / "s.sqlite", "runs", cols, key=("name", "seed")) as st:
        assert st.insert_many([{"name": "a", "seed": 0, "acc": 0.5}, {"name": "a", "seed": 1, "acc": 0.6}]) == 2
        with pytest.raises(ValueError, match="unknown columns"):  # the bad second row undoes the first
            st.insert_many([{"name": "b", "seed": 0, "acc": 0.1}, {"name": "b", "seed": 1, "bad": 1}])
        assert st.done_keys() == {("a", 0), ("a", 1)}
        assert st.insert_many([{"name": "a", "seed": 1, "acc": 0.9}, {"name": "b", "seed": 0, "acc": 0.1}]) == 1
        assert [r["acc"] for r in st.rows()] == [0.5, 0.6, 0.1]  # the duplicate key was ignored
    with Store(tmp_path / "s.sqlite", "runs", cols, key=("name", "seed")) as st:  # and it was committed
        assert len(st) == 3
