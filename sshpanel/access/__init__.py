"""Provides the policy layer: who may do what, and how a typed request becomes
Docker arguments. Pure functions, no I/O (docs/ARCHITECTURE.md "Layers")."""
