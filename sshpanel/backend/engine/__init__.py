"""The engine seam: everything the panel asks of a Docker engine.

Owns `Engine` (`client`: one typed method per Docker call, the only code
that touches the Docker SDK's client), the translation of the SDK's
exceptions into `PanelError`s (`errors`), the one decoder of Docker's
multiplexed stream (`frames`), attached execs (`exec`) and image builds
under the build limits (`build`). No module outside this package imports
`docker` (tests/test_layers.py); see docs/ARCHITECTURE.md "The engine seam".
"""

from sshpanel.backend.engine.build import BuildOutput
from sshpanel.backend.engine.client import API_VERSION, Engine, Json
from sshpanel.backend.engine.errors import translate_errors
from sshpanel.backend.engine.exec import ExecStream
from sshpanel.backend.engine.frames import STDERR, STDOUT, FrameDecoder

__all__ = ["API_VERSION", "BuildOutput", "Engine", "ExecStream", "FrameDecoder", "Json", "STDERR", "STDOUT",
           "translate_errors"]
