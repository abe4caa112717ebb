"""experiments.data: where data is looked for, the download path and the command line.

Downloads are served from the shared files through file:// URLs (the same urllib code path as the
network) and verified against the official MD5s; the tests never touch the network.
"""
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import data

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
MIRROR = (SHARED / "mnist").as_uri() + "/"
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # shared README


def test_folder_resolution_argument_then_env_then_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    assert data.resolve_data_dir() == Path("data")
    assert data.resolve_data_dir().resolve() == tmp_path / "data"  # not next to the package
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "env"))
    assert data.resolve_data_dir() == tmp_path / "env"
    assert data.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.setenv(data.ENV_VAR, "")  # set but empty: as if unset
    assert data.resolve_data_dir() == Path("data")


def test_a_new_user_is_told_a_command_that_works(tmp_path, monkeypatch, capsys):
    # issue 12 §6: the default folder was an empty user cache and the hint named download=True
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    with pytest.raises(FileNotFoundError) as err:
        data.load_mnist()
    message = str(err.value)
    assert data.ENV_VAR in message and "download=True" not in message
    command = shlex.split(re.search(r"`([^`]*)`", message).group(1))
    assert command == ["python", "-m", "experiments.data", "--download", "--data-dir", "data", "mnist"]
    monkeypatch.setattr(data, "MNIST_URLS", ("file:///nonexistent/mirror/", MIRROR))
    assert data.main(command[3:]) == 0
    assert "mnist: 60000 train and 10000 test images" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "data" / "mnist").iterdir()) == sorted(data.MNIST_MD5)
    monkeypatch.setattr(data, "MNIST_URLS", ())  # from now on, no download possible
    assert np.bincount(data.load_mnist().y_test).tolist() == MNIST_TEST_COUNTS


def test_download_skips_a_mirror_serving_wrong_files(tmp_path, monkeypatch):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in data.MNIST_MD5:
        (bad / name).write_bytes(b"<html>too many requests</html>")
    out = tmp_path / "out"
    (out / "mnist").mkdir(parents=True)
    (out / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes((SHARED / "mnist" / "t10k-labels-idx1-ubyte.gz")
                                                              .read_bytes())  # one file already there
    monkeypatch.setattr(data, "MNIST_URLS", (bad.as_uri() + "/", MIRROR))
    assert data.load_mnist(out, download=True).x_train.shape == (60000, 784)
    assert sorted(p.name for p in (out / "mnist").iterdir()) == sorted(data.MNIST_MD5)  # no .part
    monkeypatch.setattr(data, "MNIST_URLS", (bad.as_uri() + "/",))
    with pytest.raises(OSError, match="could not download train-images-idx3-ubyte.gz: .*checksum mismatch"):
        data.load_mnist(tmp_path / "none", download=True)
    assert list((tmp_path / "none" / "mnist").iterdir()) == []  # nothing wrong was kept


def test_command_line_errors(tmp_path, capsys):
    assert data.main(["svhn"]) == 2
    assert "error: argument NAME: unknown data set 'svhn'; valid names: mnist, cifar10" in capsys.readouterr().err
    assert data.main(["--data-dir", str(tmp_path), "cifar10"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: CIFAR-10 not found") and f"--download --data-dir {tmp_path} cifar10" in err
    assert data.main(["--data-dir", str(SHARED)]) == 0
    out = capsys.readouterr().out
    assert "mnist: 60000 train" in out and "cifar10: 4000 train and 1000 test images of 3072" in out


def test_module_entry_point():
    r = subprocess.run([sys.executable, "-m", "experiments.data", "--help"], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--download" in r.stdout and data.ENV_VAR in r.stdout
