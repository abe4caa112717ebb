"""A command line piped into a reader that leaves early (``... | head``) ends quietly with status
0: no BrokenPipeError traceback (meanfield.cli.args.run_main)."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("argv", [
    ["-m", "meanfield.gradients", "--realisations", "0", "--depth", "3000"],
    ["-m", "meanfield.depthscale", "--activation", "relu", "--sigma-w2", "0.1:1.5:0.0005"],
])
def test_reader_leaving_early_is_not_an_error(argv):
    p = subprocess.Popen([sys.executable, *argv], cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    assert p.stdout.readline()  # the first line, then the reader leaves (> 64 KiB remain)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
