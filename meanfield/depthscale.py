"""``python -m meanfield.depthscale``: the command line of :mod:`meanfield.cli.depthscale`.

The depth-scale mathematics is in :mod:`meanfield.depth_scales`; this module is only the entry
point users type, kept out of ``meanfield/__init__`` so that running it never imports it twice.
"""
from .cli.args import run_main
from .cli.depthscale import main

if __name__ == "__main__":
    run_main(main)
