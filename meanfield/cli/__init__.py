"""Command lines: ``python -m meanfield.depthscale`` (fixed points, slopes, depth scales) and
``python -m meanfield.gradients`` (per-layer gradient metrics: theory and simulation).
Shared argument types live in :mod:`meanfield.cli.args`."""
