"""Provides sshpanel: a multi-user container panel reached over SSH."""

__version__ = "0.1.0"
