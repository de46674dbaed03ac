"""mexjax: security of multi-exit (early-exit) neural networks in JAX.

Layers, top to bottom (imports only go down; tests/test_imports.py enforces it): cli / demo /
victim_training -> serve -> attacks -> defenses -> metrics -> oracle -> train, captioning -> nets ->
exits -> data -> checkpoint, results. See docs/architecture.md.
"""

__version__ = "0.1.0"
