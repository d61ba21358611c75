"""Provides the SSH transport: the asyncssh server, authentication, the
Textual driver and the exec command line. The only package importing
asyncssh (docs/ARCHITECTURE.md "Layers")."""
