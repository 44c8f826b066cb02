"""Tools that rebuild what ships: run each as ``python -m tools.NAME`` from the repository root."""
