"""Attacks on multi-exit networks.

Subpackages:
  steal      model extraction, every attack typed against `oracle.BlackBox` and returning an
             `AttackResult`: the timing attack (utility + output strategy), the KnockoffNets / Noise /
             ES baselines, data-free DFME / MAZE, few-call stealing, and the extraction harness
  slowdown   DeepSloth (per sample, universal, adaptive to a detector) on multi-exit networks and
             NICGSlowDown on captioners: white box, or transferred from a surrogate
  _pgd       the one projected-gradient loop (`pgd`, traceable) and chunked host driver (`in_chunks`)
             the perturbation attacks share (private to this package)
"""
