"""Provides `python -m sshpanel`, the same as the `sshpanel` console script."""

from sshpanel.cli import main

raise SystemExit(main())
