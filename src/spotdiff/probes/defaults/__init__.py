"""Defaults audit: equivalent optimisers, layers and losses compared across frameworks.

Neutral modules (no framework import): components, names, reference, initcheck, compare, render,
audit, cli. One probe per framework (torch_probe, tf_probe, jax_probe: same functions, same
order) runs inside `child`, one framework per process. Entry point: `audit.run_audit`.
"""
