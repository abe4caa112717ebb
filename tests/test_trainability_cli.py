"""The trainability command line refuses bad input with an ``error:`` line naming the flag and its
valid range, exit status 2, before torch is imported or data is loaded (issue 12 section 6); a
missing data folder names the download command and MEANFIELD_DATA_DIR."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import config
from experiments import trainability as tr

REPO = Path(__file__).parents[1]
SHARED = REPO.parent / "shared" / "data"

BAD = {   # flags -> what the error line must say
    ("--width", "0"): "argument --width: must be an integer >= 1, got '0'",
    ("--lr", "nan"): "argument --lr: lr (learning rate) must be > 0, got 'nan'",
    ("--optimizer", "adam"): "argument --optimizer: optimizer must be one of sgd, rmsprop, got 'adam'",
    ("--steps", "0"): "argument --steps: must be an integer >= 1, got '0'",
    ("--batch-size", "0"): "argument --batch-size: must be an integer >= 1, got '0'",
    ("--sigma-w2", "1:4:0"): "argument --sigma-w2: the step of start:stop:step '1:4:0' must be > 0",
    ("--depth", "10:0:5"): "argument --depth: the stop of start:stop:step '10:0:5' must be >= its start",
    ("--threads", "0"): "argument --threads: must be an integer >= 1, got '0'",
    ("--device", "foo"): "argument --device: must be auto, cpu, cuda or cuda:N (N a GPU index), got 'foo'",
    ("--keep", "0"): "argument --keep: keep probability rho must lie in (0, 1], got '0.0'",
    ("--depth-resolution", "0"): "argument --depth-resolution: depth_resolution must be > 0, got '0'",
    ("--search", "random"): "argument --search: search must be one of grid, boundary, got 'random'",
    ("--checkpoints", "0"): "argument --checkpoints: must be an integer >= 1, got '0'",
    ("--max-members", "0"): "argument --max-members: must be an integer >= 1, got '0'",
    ("--dataset", "svhn"): "argument --dataset: dataset must be one of mnist, cifar10, got 'svhn'",
    ("--noise", "dropout(keep=2)"): "argument --noise: keep (keep probability rho) must lie in (0, 1]",
}

SCRIPT = """
import json, sys
from experiments import trainability as tr
out = []
for argv in json.loads(sys.argv[1]):
    try:
        tr.main(argv)
        out.append(None)
    except SystemExit as e:
        out.append(e.code)
print(json.dumps({"codes": out, "torch": "torch" in sys.modules}))
"""


def test_bad_flags_exit_2_naming_the_flag_before_torch():
    argvs = [["--preset", "smoke", *flags] for flags in BAD]
    argvs.append(["--preset", "smoke", "--steps", "10", "--checkpoints", "10"])  # not below --steps
    p = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(argvs)], cwd=REPO,
                       capture_output=True, text=True, timeout=120, check=False)
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["codes"] == [2] * len(argvs), p.stderr
    assert not res["torch"], "torch was imported before the arguments were checked"
    errors = [ln for ln in p.stderr.splitlines() if "error:" in ln]
    assert len(errors) == len(argvs)
    for line, want in zip(errors, BAD.values()):
        assert want in line, (line, want)
    assert "checkpoints must be below steps = 10" in errors[-1]


def test_cuda_without_cuda_and_missing_data(capsys, tmp_path, monkeypatch):
    import torch
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as e:
            tr.main(["--preset", "smoke", "--device", "cuda", "--dry-run"])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "argument --device: device 'cuda' requested but CUDA is not available" in err
    monkeypatch.delenv("MEANFIELD_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)   # ./data does not exist here
    assert tr.main(["--preset", "smoke", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: data set mnist: MNIST not found")
    assert "python -m experiments.data --download" in err and "MEANFIELD_DATA_DIR" in err


def test_keep_grid_and_noise_flags_build_the_noise_grid():
    p = tr.build_parser()

    def sweep(*argv):
        return config.sweep_from_args(tr.PRESETS["smoke"], p.parse_args(list(argv)), p)
    s = sweep("--noise", "dropout", "--keep", "1,0.99,0.98,0.95")
    assert s.noises == ("dropout(keep=1.0)", "dropout(keep=0.99)", "dropout(keep=0.98)",
                        "dropout(keep=0.95)")
    s = sweep("--noise", "sparseout(keep=0.9, s=1.5);gaussian(sigma_eps2=0.1)")
    assert s.noises == ("gaussian(sigma_eps2=0.1)", "sparseout(keep=0.9, s=1.5, backward='true')")
    s = sweep("--sigma-w2", "1:4:0.1", "--depth", "10:250:10", "--seeds", "0,1")
    assert len(s.sigma_w2s) == 31 and s.sigma_w2s[3] == 1.3 and s.depths[-1] == 250
    assert s.seeds == (0, 1)
    assert config.KEY[-1] == "steps" and "max_steps" in config.KEY and "keep" not in config.KEY
    assert set(config.KEY) | set(config.RESULT_COLUMNS) == set(config.COLUMNS)
    # every protocol column of the fit comes from the schema
    assert set(config.PROTOCOL) <= set(config.COLUMNS)
