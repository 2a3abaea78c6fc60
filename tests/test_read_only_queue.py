"""A queue whose folder cannot be written (a read-only disk, another user's folder, a copy on
a mounted backup) is still read: SQLite needs a -wal and a -shm file beside a WAL database
even to read it, and every command said "cannot write the database … (unable to open
database file)", `plur-queue list` too. Writes still fail, with exit 1, and change nothing.

The folder is made immutable (`chattr +i`), which binds root too, as the suite runs here."""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from plur_post.cli import cli as post_cli
from plur_queue.cli import cli as queue_cli
from plur_queue.plur_export import cli as export_cli
from tests.helpers import BIN, PATIENCE, Clock, Run

pytestmark = [pytest.mark.sqlite_only, pytest.mark.usefixtures("configured")]


@contextlib.contextmanager
def sealed(folder: Path) -> Iterator[None]:
    """The folder made immutable while the block runs."""
    if subprocess.run(["chattr", "+i", str(folder)], check=False, capture_output=True).returncode:
        pytest.skip("chattr +i is not available on this file system")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def queued(run: Run, content: str) -> str:
    result = run(post_cli, content, "-s", "1h", "-f", "json")
    assert result.exit_code == 0, result.stderr
    return str(json.loads(result.stdout)["post_id"])


def test_a_queue_in_a_folder_that_cannot_be_written_is_read_and_never_written(
    run: Run, clock: Clock, db_path: Path
) -> None:
    post_id = queued(run, "still here")
    assert not db_path.with_name(db_path.name + "-wal").exists()  # the last close checkpointed
    before = digest(db_path)
    with sealed(db_path.parent):
        listed = run(queue_cli, "list")
        assert (listed.exit_code, listed.stderr) == (0, "")
        assert post_id[:8] in listed.stdout and "still here" in listed.stdout
        shown = run(queue_cli, "show", post_id, "-f", "json")
        assert shown.exit_code == 0 and json.loads(shown.stdout)["content"] == "still here"
        assert run(queue_cli, "stats").exit_code == 0
        assert "still here" in run(export_cli).stdout
        for cli, args in (
            (queue_cli, ("cancel", post_id, "--force")),
            (queue_cli, ("reschedule", post_id, "2h")),
            (post_cli, ("another", "-s", "1h")),
        ):
            result = run(cli, *args)
            assert result.exit_code == 1, result.stdout
            assert result.stderr.startswith("Error: cannot write the database"), result.stderr
            assert "check the permissions of the file and of its folder" in result.stderr
        assert sorted(p.name for p in db_path.parent.iterdir()) == [db_path.name]
    assert digest(db_path) == before


def listing() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "plur-queue"), "list"],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=False,
    )


def test_commits_waiting_in_a_wal_file_that_cannot_be_read_are_an_error_not_missed(
    run: Run, clock: Clock, db_path: Path
) -> None:
    """Read as it is on disk, the file would miss what the -wal file holds: a change made just
    before would not be listed. With the -shm file there, the -wal file is read; without one
    to read it by, the queue is refused."""
    queued(run, "checkpointed")
    crash = (  # a writer killed before any checkpoint: its commit is only in the -wal file
        "import os, sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
        "c.execute('PRAGMA wal_autocheckpoint = 0'); "
        "c.execute(\"UPDATE posts SET content = 'only in the wal'\"); os.kill(os.getpid(), 9)"
    )
    subprocess.run([sys.executable, "-c", crash, str(db_path)], check=False)
    wal = db_path.with_name(db_path.name + "-wal")
    assert wal.stat().st_size > 0
    # Each in a process of its own, as a command runs: within one, SQLite would go on reading
    # the -shm file an earlier connection mapped, even once it is deleted.
    with sealed(db_path.parent):  # its -shm file left beside it: the -wal file is read
        result = listing()
    assert (result.returncode, result.stderr) == (0, "")
    assert "only in the wal" in result.stdout
    db_path.with_name(db_path.name + "-shm").unlink()
    with sealed(db_path.parent):
        result = listing()
    assert result.returncode == 1
    assert result.stderr == (
        f"Error: cannot read the database {db_path}: its folder is read-only here, and the"
        f" commits waiting in {wal.name} cannot be read without writing beside it — read it"
        " where its folder can be written, or copy it with its -wal file\n"
    )
