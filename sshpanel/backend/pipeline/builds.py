"""Provides `Builder`, image builds from a folder of the user's home directory
or from a tar stream, tagged `<namespace>/<user>/<NAME>:<n>` (issue 6).

Safety (issue 6 "Build safety"): the build context is always a local tar
the panel made or received (never a URL), `ADD` of a URL is refused, builds
run under the limits of `sshpanel.backend.engine.build` (network `none` or
`bridge`, never `host`; memory, a hard CPU limit, `pull=False`, a time limit
that stops the build, capped output), one at a time per user; `FROM` and
`COPY --from` may only name images the user may use; an image whose labels
claim panel ownership is removed, never tagged. A folder (or tar) without a `Dockerfile`, or a build given
`--template`, gets a template's Dockerfile injected at the top of the context
(`sshpanel.backend.pipeline.templates`), so the user's files cannot replace it; its
base images pass the same check.
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass
from typing import IO, Callable, Iterator

from sshpanel.access.build_rules import check_context_source
from sshpanel.access.dockerfile import Dockerfile, parse, trigger_bases
from sshpanel.backend.pipeline.cgroup import build_cgroup
from sshpanel.backend.user.disk import check_room
from sshpanel.backend.engine import BuildOutput, translate_errors
from sshpanel.backend.engine.context import dockerfile_of, pack_folder, top_files, with_dockerfile
from sshpanel.backend.user.files import home_dir, resolve_folder
from sshpanel.backend.user.images import ImagePolicy
from sshpanel.backend.user.quotas import pids_of
from sshpanel.backend.user.scope import UserScope
from sshpanel.backend.pipeline.templates import Templates
from sshpanel.errors import Conflict, InvalidValue, NotFound, PanelError

IMAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class BuildResult:
    """What a build produced.

    Attributes:
        ok: True when an image was built and tagged.
        tag: The new tag (`ns/user/name:n`), "" on failure.
        image_id: The image ID, "" on failure.
        seconds: Wall time of the build, seconds.
        tail: The last lines of the build log.
        error: Why it failed ("" when ok).
    """

    ok: bool
    tag: str
    image_id: str
    seconds: float
    tail: list[str]
    error: str


class Builder:
    """Image builds of one user (a `UserScope`). Every method blocks."""

    def __init__(self, scope: UserScope) -> None:
        self.scope = scope
        self.settings = scope.settings

    def repository(self, name: str) -> str:
        """Returns the user's repository of image `name` (`ns/user/name`).

        Raises:
            InvalidValue: `name` is not a lowercase image name.
        """
        if not IMAGE_NAME.match(name):
            raise InvalidValue(f"invalid image name {name!r}: use a-z, 0-9, '.', '_', '-' (at most 64)")
        return f"{self.settings.namespace}/{self.scope.principal.name}/{name}"

    def remove_image(self, reference: str) -> list[str]:
        """Removes one of the user's builds (`image rm`), as `docker image
        rm` does: the tag is removed, and the image with it when no other tag
        holds it; audited `image.rm`.

        Args:
            reference: `NAME:N` or `<namespace>/<user>/NAME:N`.

        Returns:
            Docker's lines, `Untagged: ...` and `Deleted: sha256:...`.

        Raises:
            NotFound: No such build of the user's (another user's reads the
                same).
            Conflict: A container uses the image.
        """
        prefix = f"{self.settings.namespace}/{self.scope.principal.name}/"
        tag = reference if reference.startswith(prefix) else prefix + reference
        name, _, number = tag[len(prefix):].partition(":")
        with self.scope.audited("image.rm", tag):
            if not IMAGE_NAME.match(name) or not number.isdigit():
                raise NotFound(f"no such image: {reference[:80]} (give one of your builds as NAME:N, see image ls)")
            try:
                with translate_errors(f"no such image: {reference[:80]}"):
                    result = self.scope.engine.remove_image(tag)
            except Conflict:
                raise Conflict(f"image {reference[:80]} is used by a container: remove the container first") from None
        return [f"{key}: {value}" for item in result for key, value in item.items()]

    def context_from_folder(self, folder: str) -> IO[bytes]:
        """Packs a folder of the home directory into a tar file, its
        `.dockerignore` honoured (see `sshpanel.backend.engine.context.pack_folder`).

        Raises:
            InvalidValue: A URL (see `check_context_source`); see also
                `resolve_folder`.
            NotFound: See `resolve_folder`.
        """
        check_context_source(folder)
        return pack_folder(resolve_folder(home_dir(self.settings, self.scope.principal.name), folder))

    def run(
        self, name: str, context: IO[bytes], on_line: Callable[[str], None], template: str | None = None
    ) -> BuildResult:
        """Builds `context` (a tar file) and tags it `ns/user/name:n`.

        Args:
            name: The image name (see `repository`).
            context: A tar file, with a `Dockerfile` at its top unless a
                template is used.
            on_line: Called with each line of build output (from this thread),
                until `engine.build.MAX_OUTPUT` bytes; when a build whose output was cut
                fails, then with the last `engine.build.TAIL_LINES` lines.
            template: A template name (`static`) whose Dockerfile replaces the
                context's; None: the context's own `Dockerfile`, or when it has
                none the template detected from its files.

        Returns:
            The result; the build is recorded as a `build` event and audited.

        Raises:
            InvalidValue: Bad name; no Dockerfile and no template fits; a
                Dockerfile `sshpanel.access.dockerfile.parse` refuses; a base
                image the user may not use.
            QuotaExceeded: The user holds their disk quota; the context
                unpacks to more than it.
            NotFound: No such template.
            Conflict: A build of this user is already running (not recorded).
            TimedOut: The build ran longer than `build_timeout` and was
                stopped.
            PanelError: The build failed (the engine's error line; the log
                tail is in the history record and, when the live output was
                cut, sent to `on_line`).
        """
        repository = self.repository(name)
        started = time.monotonic()
        output = BuildOutput(on_line)
        prepared = None
        with self.scope.audited("build", repository), self._one_at_a_time():
            try:
                user = self.scope.store.user_by_id(self.scope.principal.user_id)
                check_room(self.scope.engine, self.settings, user, "build")
                dockerfile = parse(self._dockerfile_text(context, template, on_line))
                self._check_bases(dockerfile)
                cgroup = self._cgroup(user)
                owner = f"{self.scope.principal.user_id}:{self.scope.principal.name}"
                prepared = with_dockerfile(context, dockerfile.render(owner), self._disk_quota())
                image_id = self.scope.engine.build(prepared, output, cgroup)
                tag = self._tag(repository, image_id)
            except PanelError as exc:
                output.replay_tail()
                result = BuildResult(False, "", "", time.monotonic() - started, list(output.tail), exc.message)
                self._record(name, result)
                raise
            finally:
                if prepared is not None:
                    prepared.close()
            result = BuildResult(True, tag, image_id, time.monotonic() - started, list(output.tail), "")
            self._record(name, result)
            return result

    @contextlib.contextmanager
    def _one_at_a_time(self) -> Iterator[None]:
        """Holds the user's build slot: at most one build per user in all
        the panel's processes (issue 6 review) and hosts (issue 19), a lock
        of `Store.locks` (a file, or an advisory lock on PostgreSQL) freed
        if the process dies.

        Raises:
            Conflict: The user has a build running.
            PanelError: The lock file cannot be opened.
            DatabaseUnavailable: The database cannot be reached.
        """
        try:
            held = self.scope.store.locks.try_lock(f"build-{self.scope.principal.name}")
        except OSError as exc:
            raise PanelError(f"cannot take your build slot: {exc.strerror or exc}") from None
        if held is None:
            raise Conflict("a build is already running for you: wait until it ends")
        try:
            yield
        finally:
            held.release()

    def _dockerfile_text(self, context: IO[bytes], template: str | None, on_line: Callable[[str], None]) -> str:
        """Returns the context's own Dockerfile when it has one and no
        template is asked for; otherwise the template's."""
        files = top_files(context)
        if template is None and "Dockerfile" in files:
            return dockerfile_of(context)
        templates = Templates(self.scope)
        chosen = templates.get(template or templates.detect(files))
        on_line(f"Using the {chosen.name} template ({chosen.source}, FROM {chosen.base or 'nothing'})")
        return chosen.text

    def _check_bases(self, dockerfile: Dockerfile) -> None:
        """Refuses base images the user may not use (see `ImagePolicy.image_id`),
        also those named by a base image's own `ONBUILD` triggers, which the
        engine runs at its `FROM` (checked like the user's instructions).

        Raises:
            InvalidValue: A base image or a trigger the user may not use.
        """
        stages = {i.args[2].lower() for i in dockerfile.instructions if i.keyword == "FROM" and len(i.args) >= 3}
        for ref in dockerfile.bases:
            image_id = ImagePolicy(self.scope).image_id(ref)
            config = self.scope.engine.inspect_image(image_id).get("Config") or {}
            for trigger_ref in trigger_bases(list(config.get("OnBuild") or []), stages):
                ImagePolicy(self.scope).image_id(trigger_ref)

    def _cgroup(self, user) -> str:
        """Prepares the user's build cgroup under their pids quota; returns
        its cgroup parent (see `build_cgroup`)."""
        driver = str(self.scope.engine.info().get("CgroupDriver") or "")
        return build_cgroup(f"{self.settings.namespace}-build", self.scope.principal.name,
                            pids_of(user, self.settings), driver)

    def _disk_quota(self) -> int:
        """The user's disk quota, bytes: the cap on an unpacked build context."""
        return self.settings.quota_disk

    def _tag(self, repository: str, image_id: str) -> str:
        """Refuses an image claiming panel labels, then tags it with the next
        number of the repository; returns the tag."""
        engine = self.scope.engine
        labels = (engine.inspect_image(image_id).get("Config") or {}).get("Labels") or {}
        claimed = sorted(key for key in labels if key.startswith(self.settings.label_prefix))
        if claimed:
            with contextlib.suppress(PanelError):  # removed meanwhile, or in use: never tagged all the same
                engine.remove_image(image_id)
            raise InvalidValue(f"labels under {self.settings.label_prefix} are reserved: {', '.join(claimed)}")
        with engine.names_lock:
            numbers = [0]
            for item in engine.images(name=repository):
                for tag in item.get("RepoTags") or []:
                    repo, _, number = tag.rpartition(":")
                    if repo == repository and number.isdigit():
                        numbers.append(int(number))
            tag = str(max(numbers) + 1)
            engine.tag(image_id, repository, tag)
        return f"{repository}:{tag}"

    def _record(self, name: str, result: BuildResult) -> None:
        """Records the build in the user's history (`build` event)."""
        head = f"{result.tag or name} {result.image_id[:19]} {result.seconds:.1f}s"
        if not result.ok:
            head = f"{name} failed in {result.seconds:.1f}s: {result.error}"
        detail = "\n".join([head, *result.tail])
        self.scope.store.add_event(self.scope.principal.user_id, None, "build", ok=result.ok, detail=detail)
