"""`Home`, the file browser's view of a home directory: confined like SFTP
(no `..`, no absolute path, no symlink followed) (issue 6)."""

from __future__ import annotations

import contextlib
import os
import threading

import pytest

from sshpanel.backend.user.files import disk_usage
from sshpanel.backend.user.home import Home
from sshpanel.config import Settings
from sshpanel.errors import InvalidValue, NotFound

DELETE_ROUNDS = 2000
"""Deletes tried while the folder flips (each takes a few system calls)."""


@pytest.fixture
def home(tmp_path) -> Home:
    home = Home(Settings(data_dir=tmp_path / "data"), "alice")
    (home.root / "app").mkdir()
    (home.root / "app" / "main.py").write_text("print(1)\n")
    (home.root / "notes.txt").write_text("abc")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep")
    os.symlink(outside, home.root / "link")
    return home


def test_lists_folders_first_with_sizes(home):
    entries = home.list()
    assert [(e.name, e.is_dir, e.is_link) for e in entries] == [
        ("app", True, False), ("link", False, True), ("notes.txt", False, False)]
    assert entries[0].size == 9 and entries[2].size == 3
    assert [e.path for e in home.list("app")] == ["app/main.py"]
    assert disk_usage(home.root) == 12  # what the disk quota counts of the home (backend/user/disk.py)


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside", "app/../../x", "", "link/precious", "a\0b"])
def test_delete_never_leaves_the_home(home, tmp_path, path):
    with pytest.raises((InvalidValue, NotFound)):
        home.delete(path)
    assert (tmp_path / "outside" / "precious").read_text() == "keep"


def test_listing_never_follows_a_symlink(home):
    with pytest.raises(InvalidValue):
        home.list("link")
    with pytest.raises(InvalidValue):
        home.list("../")


def test_delete_gives_the_bytes_it_removed_to_the_ledger(tmp_path):
    """What `delete` removed goes to `on_removed` (the disk ledger, issue
    26): a folder's regular files, a file's size, nothing for a link."""
    given: list[int] = []
    home = Home(Settings(data_dir=tmp_path / "data"), "alice", on_removed=given.append)
    (home.root / "app" / "deep").mkdir(parents=True)
    (home.root / "app" / "a").write_bytes(b"a" * 100)
    (home.root / "app" / "deep" / "b").write_bytes(b"b" * 20)
    (home.root / "single").write_bytes(b"c" * 7)
    os.symlink("/etc/passwd", home.root / "link")
    home.delete("app")
    home.delete("single")
    home.delete("link")
    assert given == [120, 7]


def test_delete_removes_links_files_and_folders(home, tmp_path):
    home.delete("link")
    assert (tmp_path / "outside" / "precious").exists() and not os.path.lexists(home.root / "link")
    home.delete("app")
    home.delete("notes.txt")
    assert home.list() == []
    with pytest.raises(NotFound):
        home.delete("notes.txt")


def test_delete_through_a_folder_swapped_for_a_link_never_leaves_the_home_regression(home, tmp_path):
    """While deletes run, the folder `work` is swapped over and over for a
    symlink to a folder outside the home: nothing outside is ever deleted."""
    outside = tmp_path / "outside"
    (outside / "victim").write_text("keep")
    work = home.root / "work"
    work.mkdir()
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                os.rename(work, home.root / "work.real")
                os.symlink(outside, work)
                os.unlink(work)
                os.rename(home.root / "work.real", work)

    flipper = threading.Thread(target=flip)
    flipper.start()
    try:
        for _ in range(DELETE_ROUNDS):
            with contextlib.suppress(OSError):
                (home.root / "work.real" if (home.root / "work.real").is_dir() else work).joinpath("victim").write_text("x")
            with contextlib.suppress(InvalidValue, NotFound):
                home.delete("work/victim")
            with contextlib.suppress(InvalidValue, NotFound):
                home.list("work")
            if not (outside / "victim").exists():
                break
    finally:
        stop.set()
        flipper.join()
    # The writes above may land outside through the swapped-in link (they are
    # the test's own, by path); what must never happen is a delete there.
    assert (outside / "victim").exists()
    assert (outside / "precious").read_text() == "keep"
