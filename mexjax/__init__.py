"""mexjax: security of multi-exit (early-exit) neural networks in JAX.

Layers (arrows point down only): cli/experiments -> attacks -> defenses -> oracle -> train -> nets
-> exits -> data. See docs/architecture.md.
"""

__version__ = "0.1.0"
