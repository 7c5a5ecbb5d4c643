"""A really full disk under the S3 store and under the stack's state folder."""

from __future__ import annotations

import errno
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingestion import bronze
from tests.support import assert_bronze_exactly, derive, free_port, free_s3_port, publish_hours, run_cli
from weatherpipe import db, stack
from weatherpipe.errors import ServiceUnavailable
from weatherpipe.proc import port_open
from weatherpipe.settings import Settings
from weatherpipe.storage import ObjectStore

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs: a disk that can really fill up (needs root and mount, as on our machines and CI)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(bytes(1 << 20))
                out.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_bronze_on_a_full_disk_then_freed(settings: Settings, small_disk: Path) -> None:
    """The S3 store's disk (the stack's state folder) fills up: the drain fails with a clear transient error and
    commits nothing it did not write; once space is freed and the store restarted, the next drain leaves every
    message exactly once."""
    other = derive(
        settings,
        s3={"endpoint_url": f"http://127.0.0.1:{free_s3_port()}"},
        stack={"state_dir": small_disk / "stack"},
    )
    s3 = stack.S3Service(other)
    total = 3000
    publish_hours(settings, total)
    try:
        s3.up()
        ObjectStore(other.s3).put("warm-up", bytes(1024))  # the store's volumes exist before the disk fills
        filler = _fill(small_disk)
        with pytest.raises(ServiceUnavailable) as failed:
            bronze.run(other)
        assert failed.value.transient and other.s3.endpoint_url in str(failed.value), failed.value
        with db.connect(other.postgres.admin) as conn:
            written = conn.execute(f'select count(*) from "{other.postgres.ops_schema}".bronze_manifest').fetchone()
        assert written == (0,)  # nothing fitted, so nothing is recorded or committed
        filler.unlink()
        s3.down()  # SeaweedFS keeps the volumes it failed to write read-only until it restarts
        s3.up()
        assert bronze.run(other).status == "success"
        assert_bronze_exactly(other, total)
    finally:
        s3.down()


def test_stack_up_on_a_full_state_folder_is_one_line(small_disk: Path) -> None:
    """`stack up` cannot write its state folder: one line naming the folder and the cause, and no service is left
    running that no pid file records."""
    _fill(small_disk)
    kafka_port = free_port()
    env = {
        "WEATHERPIPE_STACK__STATE_DIR": str(small_disk / "state"),
        "WEATHERPIPE_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_port}",
        "WEATHERPIPE_S3__ENDPOINT_URL": f"http://127.0.0.1:{free_s3_port()}",
    }
    out = run_cli("stack", "up", env=env)
    lines = [line for line in out.stderr.splitlines() if line.strip() and '"level"' not in line]
    assert out.returncode == 1 and len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "cannot write the stack's state folder" in lines[0] and "No space left on device" in lines[0], lines
    time.sleep(0.5)
    assert not port_open("127.0.0.1", kafka_port)
