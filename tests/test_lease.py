"""Leases on (run, iteration): one live holder, a crashed holder taken over, on a local
folder and on the real S3 server (SeaweedFS)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.s3_server import S3TestServer

from pec.errors import PECError
from pec.runs import layout
from pec.runs.store import LocalStore, S3Store, Store
from pec.runs.store.lease import (
    LeaseHeldError,
    LeaseKeeper,
    LeaseLostError,
    acquire,
    read_lease,
    release,
    renew,
    wait_and_acquire,
)

RUN = "lease-run"

HOLDER_SCRIPT = """
import os, signal, socket, sys, time
if sys.argv[3] != "here":
    socket.gethostname = lambda: sys.argv[3]  # as if it ran on another machine
from pec.runs.store import open_store
from pec.runs.store.lease import acquire
store = open_store(sys.argv[1])
acquire(store, "lease-run", 3, f"process {os.getpid()}", ttl_s=float(sys.argv[2]))
print("held", flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # crash without releasing
"""


def crash_holder(location: str, env: dict[str, str], ttl_s: float, host: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", HOLDER_SCRIPT, location, str(ttl_s), host],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert done.stdout.strip() == "held"


@pytest.fixture(params=["local", "s3"])
def store_and_location(
    request: pytest.FixtureRequest, tmp_path: Path, s3_server: S3TestServer
) -> tuple[Store, str, dict[str, str]]:
    if request.param == "local":
        root = tmp_path / "store"
        root.mkdir()
        return LocalStore(root), str(root), {}
    bucket = s3_server.make_bucket()
    env = {
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "PEC_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "PEC_S3_REGION": "us-east-1",
    }
    return S3Store(bucket, "runs", s3_server.settings()), f"s3://{bucket}/runs", env


def test_second_holder_is_refused_with_the_holders_name(
    store_and_location: tuple[Store, str, dict[str, str]],
) -> None:
    store, _, _ = store_and_location
    first = acquire(store, RUN, 0, "flow run aaa", ttl_s=60)
    with pytest.raises(LeaseHeldError, match="flow run aaa") as caught:
        acquire(store, RUN, 0, "flow run bbb", ttl_s=60)
    assert caught.value.holder == "flow run aaa"
    # another iteration is another lease
    acquire(store, RUN, 1, "flow run bbb", ttl_s=60)
    # the same holder (a retry of the same flow run) gets it back, renewed
    again = acquire(store, RUN, 0, "flow run aaa", ttl_s=60)
    assert again.version != first.version
    record = read_lease(store, RUN, 0)
    assert record is not None and record.holder == "flow run aaa" and record.token == again.token
    # released: the next holder takes it at once, and the releaser's stale handle cannot renew
    release(store, again)
    taken = acquire(store, RUN, 0, "flow run bbb", ttl_s=60)
    assert taken.taken_over_from is None  # a released lease is not a take-over
    with pytest.raises(LeaseLostError, match="flow run bbb"):
        renew(store, again)
    assert store.exists(layout.lease_key(RUN, 0))


def test_expired_lease_of_a_crashed_holder_on_another_host_is_taken_over(
    store_and_location: tuple[Store, str, dict[str, str]],
) -> None:
    store, location, env = store_and_location
    crash_holder(location, env, 3, host="gpu-host-7")
    record = read_lease(store, RUN, 3)
    assert record is not None and record.holder.startswith("process ")
    assert record.host == "gpu-host-7"
    # still live (its host cannot be checked from here): refused, naming the crashed process
    with pytest.raises(LeaseHeldError, match=record.holder):
        acquire(store, RUN, 3, "me", ttl_s=30)
    # once expired it is taken over, and the take-over is recorded
    time.sleep(max(0.0, record.expires_at - time.time()) + 0.2)
    lease = acquire(store, RUN, 3, "me", ttl_s=30)
    assert lease.taken_over_from == record.holder
    after = read_lease(store, RUN, 3)
    assert after is not None and after.holder == "me" and after.live(time.time())


def test_lease_of_a_crashed_process_on_this_host_is_taken_over_at_once(
    store_and_location: tuple[Store, str, dict[str, str]],
) -> None:
    store, location, env = store_and_location
    crash_holder(location, env, 600, host="here")
    record = read_lease(store, RUN, 3)
    assert record is not None and record.expires_at > time.time() + 500
    assert record.process_gone()
    lease = acquire(store, RUN, 3, "me", ttl_s=30)
    assert lease.taken_over_from == record.holder


def test_same_owner_gets_its_lease_back_under_another_display_name(
    local_store: LocalStore,
) -> None:
    acquire(local_store, RUN, 6, "flow run pec-x-it0 (id1)", ttl_s=60, owner="flow run id1")
    again = acquire(local_store, RUN, 6, "flow run renamed (id1)", ttl_s=60, owner="flow run id1")
    assert again.taken_over_from is None
    with pytest.raises(LeaseHeldError, match="renamed"):
        acquire(local_store, RUN, 6, "flow run other (id2)", ttl_s=60, owner="flow run id2")


def test_waiting_caller_gets_the_lease_when_the_holder_releases(
    store_and_location: tuple[Store, str, dict[str, str]],
) -> None:
    store, _, _ = store_and_location
    lease = acquire(store, RUN, 5, "first", ttl_s=60)
    timer = threading.Timer(1.0, release, args=(store, lease))
    timer.start()
    started = time.monotonic()
    got = wait_and_acquire(store, RUN, 5, "second", ttl_s=60, wait_s=30, poll_s=0.2)
    assert got.holder == "second"
    assert 0.9 <= time.monotonic() - started < 30
    with pytest.raises(LeaseHeldError, match="second"):
        wait_and_acquire(store, RUN, 5, "third", ttl_s=60, wait_s=0.5, poll_s=0.1)
    timer.join()


def test_concurrent_acquirers_have_exactly_one_winner(
    store_and_location: tuple[Store, str, dict[str, str]],
) -> None:
    store, _, _ = store_and_location
    barrier = threading.Barrier(6)
    winners: list[str] = []
    refused: list[str] = []

    def contend(name: str) -> None:
        barrier.wait()
        try:
            acquire(store, RUN, 7, name, ttl_s=60)
            winners.append(name)
        except LeaseHeldError as exc:
            refused.append(exc.holder)

    threads = [threading.Thread(target=contend, args=(f"holder-{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1, (winners, refused)
    assert len(refused) == 5 and set(refused) == set(winners)


def test_keeper_renews_and_releases_and_reports_a_lost_lease(local_store: LocalStore) -> None:
    lease = acquire(local_store, RUN, 2, "keeper", ttl_s=0.6)
    with LeaseKeeper(local_store, lease, interval_s=0.1) as keeper:
        time.sleep(1.5)  # well past the first expiry: renewals kept it alive
        with pytest.raises(LeaseHeldError, match="keeper"):
            acquire(local_store, RUN, 2, "intruder", ttl_s=5)
        assert not keeper.lost.is_set()
    record = read_lease(local_store, RUN, 2)
    assert record is not None and record.released
    # a holder that stalls past its TTL loses the lease to a take-over and is told so
    stale = acquire(local_store, RUN, 4, "stalled", ttl_s=0.3)
    time.sleep(0.5)
    acquire(local_store, RUN, 4, "successor", ttl_s=60)
    with LeaseKeeper(local_store, stale, interval_s=0.05) as keeper:
        assert keeper.lost.wait(5)
    assert keeper.error is not None and "successor" in keeper.error
    still = read_lease(local_store, RUN, 4)
    assert still is not None and still.holder == "successor" and not still.released


def test_bad_ttl_and_unreadable_lease(local_store: LocalStore) -> None:
    with pytest.raises(PECError, match="ttl_s"):
        acquire(local_store, RUN, 0, "x", ttl_s=0)
    local_store.write_bytes(layout.lease_key(RUN, 0), b"\xff not json")
    lease = acquire(local_store, RUN, 0, "x", ttl_s=10)  # protects nothing: taken
    assert lease.holder == "x"
