"""Leases: at most one live holder per (run, iteration), on any store.

A lease is one small JSON object, `<run>/leases/iter_<N>.json`, naming its holder (a flow
run id or a process) and an expiry time. Every change is a conditional write against the
version that was read (S3 `If-None-Match`/`If-Match`; locally the store's lock and content
check), so the store alone decides who holds it:

- `acquire` creates the object if it is absent, takes it over if it expired (or was
  released), renews it if the caller already holds it (a retry of the same flow run), and
  otherwise raises `LeaseHeldError` naming the live holder;
- `renew` pushes the expiry forward (a `LeaseKeeper` thread does that while work runs); it
  fails with `LeaseLostError` if someone else took the lease over in the meantime;
- `release` marks the lease released, so the next caller need not wait for the expiry.

A holder that crashes stops renewing; its lease expires after `ttl_s` and the next caller
takes it over. Each write also records the writer's host name and process id, so on the
same host a holder whose process is gone is taken over at once (a `pec run` killed and
started again, a worker's flow-run process killed and retried). Expiry compares wall clocks
of the machines involved: keep them in sync (NTP) and the TTL well above any skew.

`holder` is what messages show; `owner` (default: the holder) is the identity: the same
owner gets its own lease back (a Retry of the same flow run).
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from pec.errors import ConflictError, PECError, StoreError
from pec.runs import layout
from pec.runs.store.base import Store

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class LeaseHeldError(PECError):
    """Someone else holds a live lease on the (run, iteration)."""

    def __init__(self, message: str, holder: str, expires_at: float) -> None:
        super().__init__(message)
        self.holder = holder
        self.expires_at = expires_at


class LeaseLostError(PECError):
    """Our lease was taken over (we stopped renewing it for longer than its TTL)."""


@dataclass(frozen=True)
class Lease:
    """A lease we hold: `version` is the store's token for our last write."""

    run_name: str
    iteration: int
    holder: str
    token: str  # unique per acquisition; tells our write apart from a same-named holder's
    expires_at: float
    ttl_s: float
    version: str
    taken_over_from: str | None = None
    owner: str = ""

    @property
    def key(self) -> str:
        return layout.lease_key(self.run_name, self.iteration)


@dataclass(frozen=True)
class LeaseRecord:
    """What the lease object says."""

    holder: str
    token: str
    expires_at: float
    released: bool
    owner: str = ""
    host: str = ""
    pid: int = 0

    def process_gone(self) -> bool:
        """Written by a process of this host that no longer exists."""
        if self.host != socket.gethostname() or self.pid <= 0 or self.pid == os.getpid():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except OSError:  # exists, owned by someone else
            return False
        return False

    def live(self, now: float) -> bool:
        return not self.released and now < self.expires_at and not self.process_gone()


def _encode(
    run_name: str,
    iteration: int,
    holder: str,
    owner: str,
    token: str,
    now: float,
    expires_at: float,
    *,
    released: bool = False,
) -> bytes:
    payload = {
        "run_name": run_name,
        "iteration": iteration,
        "holder": holder,
        "owner": owner,
        "token": token,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "written_at": now,
        "expires_at": expires_at,
        "released": released,
    }
    return json.dumps(payload, sort_keys=True).encode()


def _decode(store: Store, key: str, data: bytes) -> LeaseRecord:
    """A lease object; an unreadable one counts as expired (it protects nothing)."""
    try:
        raw = json.loads(data.decode("utf-8"))
        holder, token = raw["holder"], raw["token"]
        expires_at, released = raw["expires_at"], raw.get("released", False)
        owner, host, pid = raw.get("owner", holder), raw.get("host", ""), raw.get("pid", 0)
        if (
            not isinstance(holder, str)
            or not isinstance(token, str)
            or not isinstance(owner, str)
            or not isinstance(host, str)
            or isinstance(pid, bool)
            or not isinstance(pid, int)
            or isinstance(expires_at, bool)
            or not isinstance(expires_at, int | float)
            or not math.isfinite(expires_at)
            or not isinstance(released, bool)
        ):
            raise TypeError("wrong field types")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        log.warning("lease %s is unreadable; treating it as expired", store.uri(key))
        return LeaseRecord(holder="<unreadable>", token="", expires_at=0.0, released=True)
    return LeaseRecord(holder, token, float(expires_at), released, owner, host, pid)


def read_lease(store: Store, run_name: str, iteration: int) -> LeaseRecord | None:
    """The lease object of (run, iteration) as stored, or None if there is none."""
    key = layout.lease_key(run_name, iteration)
    found = store.read_versioned(key)
    return None if found is None else _decode(store, key, found[0])


def describe(record: LeaseRecord, now: float) -> str:
    if record.released:
        return f"{record.holder} (released)"
    if record.process_gone():
        return f"{record.holder} (its process {record.pid} is gone)"
    left = record.expires_at - now
    if left <= 0:
        return f"{record.holder} (expired {-left:.0f} s ago)"
    return f"{record.holder} (lease expires in {left:.0f} s unless renewed)"


def acquire(
    store: Store,
    run_name: str,
    iteration: int,
    holder: str,
    ttl_s: float,
    clock: Clock = time.time,
    owner: str | None = None,
) -> Lease:
    """Take the lease of (run, iteration) for `holder`, or raise LeaseHeldError."""
    owner = owner or holder
    if not ttl_s > 0:
        raise StoreError(f"lease ttl_s must be > 0, got {ttl_s!r}")
    key = layout.lease_key(run_name, iteration)
    token = uuid.uuid4().hex
    for _ in range(3):  # a lost race means another caller wrote in between: look again
        now = clock()
        found = store.read_versioned(key)
        previous: str | None = None
        expected: str | None = None
        if found is not None:
            record = _decode(store, key, found[0])
            expected = found[1]
            if record.live(now) and record.owner != owner:
                raise LeaseHeldError(
                    f"iteration {iteration} of run '{run_name}' is being run by "
                    f"{describe(record, now)}; not starting a second copy",
                    holder=record.holder,
                    expires_at=record.expires_at,
                )
            if record.owner != owner and not record.released:
                previous = record.holder
        data = _encode(run_name, iteration, holder, owner, token, now, now + ttl_s)
        try:
            version = store.write_conditional(key, data, expected)
        except ConflictError:
            continue
        if previous is not None:
            log.warning(
                "took over the expired lease of iteration %d of run %s from %s",
                iteration,
                run_name,
                previous,
            )
        return Lease(
            run_name, iteration, holder, token, now + ttl_s, ttl_s, version, previous, owner
        )
    last = read_lease(store, run_name, iteration)
    who = describe(last, clock()) if last is not None else "another caller"
    raise LeaseHeldError(
        f"iteration {iteration} of run '{run_name}': lost the race for its lease to {who}",
        holder=last.holder if last is not None else "unknown",
        expires_at=last.expires_at if last is not None else 0.0,
    )


def _rewrite(store: Store, lease: Lease, data: bytes) -> str:
    try:
        return store.write_conditional(lease.key, data, lease.version)
    except ConflictError:
        record = read_lease(store, lease.run_name, lease.iteration)
        who = describe(record, time.time()) if record is not None else "nobody (it was deleted)"
        raise LeaseLostError(
            f"the lease of iteration {lease.iteration} of run '{lease.run_name}' held by "
            f"{lease.holder} was taken over; it is now held by {who}"
        ) from None


def renew(store: Store, lease: Lease, clock: Clock = time.time) -> Lease:
    """Push our lease's expiry `ttl_s` into the future; LeaseLostError if it is not ours."""
    now = clock()
    data = _encode(
        lease.run_name,
        lease.iteration,
        lease.holder,
        lease.owner or lease.holder,
        lease.token,
        now,
        now + lease.ttl_s,
    )
    version = _rewrite(store, lease, data)
    return Lease(
        lease.run_name,
        lease.iteration,
        lease.holder,
        lease.token,
        now + lease.ttl_s,
        lease.ttl_s,
        version,
        lease.taken_over_from,
        lease.owner,
    )


def release(store: Store, lease: Lease, clock: Clock = time.time) -> None:
    """Mark our lease released (conditionally: a lease already taken over is left alone)."""
    now = clock()
    data = _encode(
        lease.run_name,
        lease.iteration,
        lease.holder,
        lease.owner or lease.holder,
        lease.token,
        now,
        now,
        released=True,
    )
    try:
        _rewrite(store, lease, data)
    except LeaseLostError as exc:
        log.warning("%s; not releasing it", exc)


def wait_and_acquire(
    store: Store,
    run_name: str,
    iteration: int,
    holder: str,
    ttl_s: float,
    wait_s: float,
    poll_s: float = 5.0,
    clock: Clock = time.time,
    sleep: Callable[[float], None] = time.sleep,
    owner: str | None = None,
) -> Lease:
    """Like `acquire`, but wait up to `wait_s` for a live holder to release or expire."""
    deadline = clock() + wait_s
    while True:
        try:
            return acquire(store, run_name, iteration, holder, ttl_s, clock, owner)
        except LeaseHeldError:
            if clock() >= deadline:
                raise
        sleep(max(0.05, min(poll_s, deadline - clock())))


class LeaseKeeper:
    """Renews a lease in a background thread every `ttl_s / 3` until stopped.

    `lost` is set (and `error` holds why) if a renewal found the lease taken over, so the
    holder can stop before it writes anything else.
    """

    def __init__(self, store: Store, lease: Lease, interval_s: float | None = None) -> None:
        self.store = store
        self.lease = lease
        self.interval_s = interval_s if interval_s is not None else lease.ttl_s / 3.0
        self.lost = threading.Event()
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pec-lease-keeper", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        if not self.lost.is_set():
            release(self.store, self.lease)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.lease = renew(self.store, self.lease)
            except LeaseLostError as exc:
                self.error = str(exc)
                self.lost.set()
                log.error("%s", exc)
                return
            except PECError as exc:  # a store hiccup: try again at the next interval
                log.warning("could not renew the lease %s: %s", self.lease.key, exc)
