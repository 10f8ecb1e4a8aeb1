"""Algorithms, pure-functional JAX (filled by the diffusion-core and policy issues)."""
