"""``python -m meanfield.gradients``: the command line of :mod:`meanfield.cli.gradients`.

The gradient theory is in :mod:`meanfield.backprop` (``meanfield.gradient_metrics``); this module
is only the entry point users type, kept out of ``meanfield/__init__``.
"""
from .cli.args import run_main
from .cli.gradients import main

if __name__ == "__main__":
    run_main(main)
