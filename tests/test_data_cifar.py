"""CIFAR-10 loader: exact batch names only (strays ignored with a warning), readable errors naming
the file, Python 3 pickles, label and shape validation, a restricted unpickler.

Reference values come from the shared subset's README (4,000 + 1,000 images, first labels of the
official batches) and from batches built here, not from the loader.
"""
import pickle
import shutil
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest

from experiments import data

SUBSET = (Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10"
          / "cifar-10-batches-py-subset")


def _subset_copy(tmp_path) -> Path:
    folder = tmp_path / "cifar10" / "cifar-10-batches-py-subset"
    folder.mkdir(parents=True)
    for p in SUBSET.iterdir():
        shutil.copy(p, folder / p.name)
        (folder / p.name).chmod(0o644)
    return folder


def _batch(n, seed, *, str_keys=False, protocol=2, labels=None, pixels=None):
    rng = np.random.default_rng(seed)
    d = {"batch_label": "synthetic", "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)
         if pixels is None else pixels, "labels": rng.integers(0, 10, n).tolist() if labels is None
         else labels}
    if not str_keys:  # the official files: Python 2 str keys, read back as bytes
        d = {k.encode(): v for k, v in d.items()}
    return pickle.dumps(d, protocol=protocol)


def test_stray_copy_of_a_batch_is_ignored_with_a_warning(tmp_path):
    folder = _subset_copy(tmp_path)
    shutil.copy(folder / "data_batch_1_first4000", folder / "data_batch_1_first4000.bak")
    (folder / "test_batch_first1000.orig").write_bytes(b"truncated")
    with pytest.warns(UserWarning) as record:
        d = data.load_cifar10(tmp_path)
    assert d.x_train.shape == (4000, 3072) and d.x_test.shape == (1000, 3072)  # not doubled
    text = [str(w.message) for w in record]
    assert any("data_batch_1_first4000.bak: ignored" in t for t in text)
    assert any("test_batch_first1000.orig: ignored" in t for t in text)
    assert not any("batches.meta" in t for t in text)  # shipped with the data: silent
    assert d.y_train[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]


def test_clean_folder_loads_without_warnings(tmp_path):
    _subset_copy(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = data.load_cifar10(tmp_path / "cifar10")
    assert d.y_test[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]


def test_truncated_or_foreign_batch_errors_name_the_file(tmp_path):
    folder = _subset_copy(tmp_path)
    test = folder / "test_batch_first1000"
    test.write_bytes(SUBSET.joinpath(test.name).read_bytes()[:50_000])
    with pytest.raises(ValueError, match="checksum mismatch for .*test_batch_first1000"):
        data.load_cifar10(tmp_path)
    with pytest.raises(ValueError, match="test_batch_first1000: not a readable CIFAR-10 python batch"):
        data.load_cifar10(tmp_path, verify=False)
    test.write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match="test_batch_first1000: not a readable"):
        data.load_cifar10(tmp_path, verify=False)
    test.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(ValueError, match="test_batch_first1000: a CIFAR-10 batch is a dict"):
        data.load_cifar10(tmp_path, verify=False)


class _Plant:
    """A pickle that would create a file when loaded with plain pickle.load."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_a_batch_cannot_run_code(tmp_path):
    folder = _subset_copy(tmp_path)
    planted = tmp_path / "planted"
    (folder / "test_batch_first1000").write_bytes(pickle.dumps({b"data": _Plant(str(planted))}))
    with pytest.raises(ValueError, match="test_batch_first1000: not a readable.*not part of a CIFAR-10"):
        data.load_cifar10(tmp_path, verify=False)
    assert not planted.exists()


def test_python3_pickle_with_str_keys_is_accepted(tmp_path):
    folder = _subset_copy(tmp_path)
    with open(SUBSET / "test_batch_first1000", "rb") as f:
        official = pickle.load(f, encoding="bytes")
    (folder / "test_batch_first1000").write_bytes(pickle.dumps(
        {"data": official[b"data"], "labels": official[b"labels"]}, protocol=pickle.HIGHEST_PROTOCOL))
    with pytest.raises(ValueError, match="checksum mismatch for .*test_batch_first1000"):
        data.load_cifar10(tmp_path)  # not the shared file any more
    d = data.load_cifar10(tmp_path, verify=False)
    np.testing.assert_array_equal(d.y_test, official[b"labels"])
    np.testing.assert_array_equal(d.x_test * np.float32(255), official[b"data"].astype(np.float32))


@pytest.mark.parametrize("kwargs, match", [
    ({"labels": [1, 2, 3]}, r"\(3,\) labels for 4 images"),
    ({"labels": [0, 1, 10, 2]}, r"labels range over 0\.\.10, expected 0\.\.9"),
    ({"labels": [0, -1, 3, 2]}, r"labels range over -1\.\.3"),
    ({"labels": [0.5, 1, 2, 3]}, "labels of type float64"),
    ({"pixels": np.zeros((4, 1024), np.uint8)}, r"data has shape \(4, 1024\), expected \(N, 3072\)"),
    ({"pixels": np.full((4, 3072), 300)}, "pixels must be integers in 0..255"),
    ({"pixels": np.zeros((4, 3072))}, "pixels must be integers in 0..255"),
])
def test_bad_labels_and_data_are_rejected_naming_the_file(tmp_path, kwargs, match):
    folder = _subset_copy(tmp_path)
    (folder / "data_batch_1_first4000").write_bytes(_batch(4, 0, **kwargs))
    with pytest.raises(ValueError, match="data_batch_1_first4000: " + match):
        data.load_cifar10(tmp_path, verify=False)


def test_missing_key_is_named(tmp_path):
    folder = _subset_copy(tmp_path)
    (folder / "data_batch_1_first4000").write_bytes(pickle.dumps({b"pixels": 1}))
    with pytest.raises(ValueError, match="data_batch_1_first4000: no 'data' entry"):
        data.load_cifar10(tmp_path, verify=False)


def _official_folder(tmp_path, n=3):
    """An official-layout folder of small synthetic batches; returns (folder, their md5s)."""
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i, name in enumerate(data.CIFAR10_OFFICIAL_MD5):
        (folder / name).write_bytes(_batch(n, i))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": []}))
    (folder / "readme.html").write_text("<html></html>")
    return folder, {name: data._md5(folder / name) for name in data.CIFAR10_OFFICIAL_MD5}


def test_official_layout_needs_every_batch_and_ignores_others(tmp_path, monkeypatch):
    folder, md5 = _official_folder(tmp_path)
    monkeypatch.setattr(data, "CIFAR10_OFFICIAL_MD5", md5)
    shutil.copy(SUBSET / "data_batch_1_first4000", folder / "data_batch_1_first4000")
    (folder / "data_batch_6").write_bytes(_batch(3, 6))
    with pytest.warns(UserWarning) as record:
        d = data.load_cifar10(tmp_path)
    assert sorted(str(w.message).split(": ")[0].rsplit("/", 1)[1] for w in record) == \
        ["data_batch_1_first4000", "data_batch_6"]
    assert d.x_train.shape == (15, 3072) and d.x_test.shape == (3, 3072)
    expect = [pickle.loads(_batch(3, i), encoding="bytes")[b"labels"] for i in range(5)]
    assert d.y_train.tolist() == sum(expect, [])  # batches 1..5 in order
    (folder / "data_batch_5").unlink()
    with pytest.raises(FileNotFoundError,
                       match=r"incomplete official CIFAR-10 batches: missing \['data_batch_5'\]"):
        data.load_cifar10(tmp_path)


def test_download_unpacks_the_verified_archive(tmp_path, monkeypatch):
    # served from a local archive through a file:// URL (the code path of the real download)
    folder, md5 = _official_folder(tmp_path / "src")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        t.add(folder, arcname="cifar-10-batches-py")
    monkeypatch.setattr(data, "CIFAR10_URL", archive.as_uri())
    monkeypatch.setattr(data, "CIFAR10_TAR_MD5", data._md5(archive))
    monkeypatch.setattr(data, "CIFAR10_OFFICIAL_MD5", md5)
    out = tmp_path / "dl"
    assert data.main(["--download", "--data-dir", str(out), "cifar10"]) == 0
    assert [p.name for p in (out / "cifar10").iterdir()] == ["cifar-10-batches-py"]  # no leftovers
    d = data.load_cifar10(out)
    assert d.x_train.shape == (15, 3072) and d.y_test.tolist() == \
        pickle.loads(_batch(3, 5), encoding="bytes")[b"labels"]
    monkeypatch.setattr(data, "CIFAR10_TAR_MD5", "0" * 32)  # a corrupted or foreign archive
    with pytest.raises(ValueError, match="checksum mismatch for file://.*cifar-10-python.tar.gz"):
        data.load_cifar10(tmp_path / "dl2", download=True)
    assert list((tmp_path / "dl2" / "cifar10").iterdir()) == []  # nothing unpacked, nothing kept
