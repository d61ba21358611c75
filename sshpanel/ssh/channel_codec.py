"""Provides the byte-exact channel codec of `exec` and shell bridges, and the
helpers that switch a channel to it.

The server decodes every channel as UTF-8 with `errors="replace"` (the TUI
driver relies on `str`), which loses any byte that is not UTF-8. A bridge to
a container must pass bytes unchanged, yet the command line around it still
writes text (error messages). The codec `sshpanel-bytes` therefore decodes
input as Latin-1, one character per byte, so nothing is held back (asyncssh
drops what an incremental UTF-8 decoder still holds at EOF), and encodes
output as UTF-8 with `surrogateescape`, so messages stay UTF-8 and output
decoded by `output_decoder()` goes out as the original bytes.
"""

from __future__ import annotations

import codecs
import contextlib
from typing import Iterator

import asyncssh

NAME = "sshpanel-bytes"
"""Codec name given to `SSHChannel.set_encoding`."""

BYTE_VERBS = frozenset({"exec", "build"})
"""Commands whose standard input goes to a container byte for byte."""


class _Encoder(codecs.IncrementalEncoder):
    """Output: UTF-8, with lone surrogates (escaped bytes) back as bytes."""

    def encode(self, input: str, final: bool = False) -> bytes:
        return input.encode("utf-8", "surrogateescape")


class _Decoder(codecs.IncrementalDecoder):
    """Input: one character per byte (Latin-1); stateless."""

    def decode(self, input: bytes, final: bool = False) -> str:
        return bytes(input).decode("latin-1")


def _search(name: str) -> codecs.CodecInfo | None:
    """Codec search function: knows `sshpanel-bytes` only."""
    if name.replace("-", "_") != NAME.replace("-", "_"):
        return None
    return codecs.CodecInfo(
        name=NAME,
        encode=lambda text, errors="strict": (_Encoder().encode(text), len(text)),
        decode=lambda data, errors="strict": (_Decoder().decode(data), len(data)),
        incrementalencoder=_Encoder,
        incrementaldecoder=_Decoder,
    )


def _register() -> None:
    """Registers the codec once per process (the registry is the
    interpreter's own; the search function is pure)."""
    try:
        codecs.lookup(NAME)
    except LookupError:
        codecs.register(_search)


def input_bytes(text: str) -> bytes:
    """Returns the bytes the client sent, from input read under this codec."""
    return text.encode("latin-1")


def output_decoder() -> codecs.IncrementalDecoder:
    """Returns a decoder for bytes to be written under this codec; call
    `decode(b"", True)` at the end for the bytes of an unfinished sequence."""
    return codecs.getincrementaldecoder("utf-8")("surrogateescape")


def prepare_channel(process: asyncssh.SSHServerProcess) -> None:
    """Switches a byte-stream command's channel (`exec`) to this codec.

    Must run when the session starts, before asyncssh decodes the first
    input (the process factory does it): input that arrives together with
    the exec request is decoded as soon as the factory returns. Other
    sessions, the TUI in particular, keep the server's codec.
    """
    verb = (process.command or "").split(None, 1)[:1]
    if verb and verb[0] in BYTE_VERBS:
        _register()
        process.channel.set_encoding(NAME)


@contextlib.contextmanager
def byte_exact(process: asyncssh.SSHServerProcess) -> Iterator[None]:
    """Puts the channel under this codec inside the block and restores the
    previous codec afterwards (for a bridge opened from the TUI)."""
    _register()
    channel = process.channel
    saved = channel.get_encoding()
    channel.set_encoding(NAME)
    try:
        yield
    finally:
        if not channel.is_closing():
            channel.set_encoding(*saved)
