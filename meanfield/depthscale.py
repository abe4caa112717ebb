"""``python -m meanfield.depthscale``: the command line of :mod:`meanfield.cli.depthscale`.

The depth-scale mathematics is in :mod:`meanfield.depth_scales`; this module is only the entry
point users type, kept out of ``meanfield/__init__`` so that running it never imports it twice.
"""
import os
import sys

from .cli.depthscale import main

if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # `... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
