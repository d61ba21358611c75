"""Provides the `deploy` and `rollback` commands: `deploy NAME [--image TAG]`
runs the newest build of NAME as the container NAME (replacing the running
one, kept when the new one does not stay up); `rollback NAME` deploys the
previous image again (issue 6)."""

from __future__ import annotations

import argparse

from sshpanel.backend.pipeline.deploy import DeployResult, Deployer
from sshpanel.ssh.commands.base import Context, Handler
from sshpanel.ssh.commands.build import in_own_thread


def register(sub) -> dict[str, Handler]:
    """Adds `deploy` and `rollback`; returns their handlers."""
    deploy = sub.add_parser("deploy", help="run the newest build of NAME as the container NAME (replaces it)")
    deploy.add_argument("name", metavar="NAME", help="container name; also the image name of your builds")
    deploy.add_argument("--image", metavar="TAG", help="a build number of NAME (e.g. 3) or an image reference")
    rollback = sub.add_parser("rollback", help="deploy the image of the previous deployment of NAME again")
    rollback.add_argument("name", metavar="NAME", help="container name")
    return {"deploy": _deploy, "rollback": _rollback}


async def _deploy(ctx: Context, args: argparse.Namespace) -> int:
    deployer = Deployer(ctx.workspace)
    return _report(ctx, await in_own_thread(deployer.deploy, args.name, args.image, ctx.out))


async def _rollback(ctx: Context, args: argparse.Namespace) -> int:
    deployer = Deployer(ctx.workspace)
    return _report(ctx, await in_own_thread(deployer.rollback, args.name, ctx.out))


def _report(ctx: Context, result: DeployResult) -> int:
    """Prints the outcome; returns the exit code (1 when it failed)."""
    if not result.ok:
        ctx.err(f"Error: {result.message}")
        return 1
    ctx.out(result.message)
    return 0
