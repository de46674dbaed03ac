"""Attacks on multi-exit networks: `steal` (model extraction incl. the output strategy)."""
