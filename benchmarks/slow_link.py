"""Two hosts in network namespaces joined by an emulated wide-area link (rate and delay).

Not a benchmark itself (see train_slow_links.py). `tc netem` would be the
usual tool, but this machine's kernel has no netem qdisc ("Specified qdisc
kind is unknown"), so the link is a relay in this process: each host has a
TUN device, and the relay carries every IP packet from one to the other with
netem's model of a link: a packet leaves after the previous one has been
serialised at `rate` bits/s, and arrives `delay` later (one way; the round trip
is twice that). The queue is unbounded, like netem with a large `limit`: TCP
sees delay, never loss. The relay counts the bytes each host sends (IP packets,
headers included).

The TUN MTU is 64 KiB so that the relay handles a few thousand packets a
second at 500 Mbit/s; addresses are 10.89.0.1 and 10.89.0.2.
"""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

ADDRESSES = ("10.89.0.1", "10.89.0.2")
MTU = 65_000
_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000


@dataclass(frozen=True)
class Link:
    mbit_per_second: float
    rtt_ms: float

    def __str__(self) -> str:
        return f"{self.mbit_per_second:g} Mbit/s, {self.rtt_ms:g} ms RTT"


@dataclass
class Direction:
    """One way of the link: packets from `source` written to `target` when due."""

    source: int
    target: int
    link: Link
    bytes: int = 0
    queue: deque[tuple[float, bytes]] = field(default_factory=deque)
    ready: threading.Condition = field(default_factory=threading.Condition)
    _free_at: float = 0.0

    def read(self, stop: threading.Event) -> None:
        seconds_per_byte = 8 / (self.link.mbit_per_second * 1e6)
        delay = self.link.rtt_ms / 2000
        while not stop.is_set():
            try:
                packet = os.read(self.source, MTU + 100)
            except OSError:
                return
            now = time.monotonic()
            self._free_at = max(now, self._free_at) + len(packet) * seconds_per_byte
            self.bytes += len(packet)
            with self.ready:
                self.queue.append((self._free_at + delay, packet))
                self.ready.notify()

    def write(self, stop: threading.Event) -> None:
        while not stop.is_set():
            with self.ready:
                while not self.queue and not stop.is_set():
                    self.ready.wait(0.1)
                if stop.is_set():
                    return
                due, packet = self.queue.popleft()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                os.write(self.target, packet)
            except OSError:
                return


def _tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI))
    return fd


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@contextmanager
def slow_link_hosts(link: Link) -> Iterator[tuple[tuple[str, str], list[Direction]]]:
    """Two namespaces (own names, 10.89.0.0/24) and the relay between them; removed on exit.

    Yields the namespace names and the two directions (A->B, B->A) with their byte counts.
    """
    tag = uuid.uuid4().hex[:6]
    hosts = (f"okai-dlc-{tag}-a", f"okai-dlc-{tag}-b")
    devices = (f"dlc{tag}a", f"dlc{tag}b")
    stop = threading.Event()
    fds: list[int] = []
    threads: list[threading.Thread] = []
    try:
        for host, device, address, peer in zip(
            hosts, devices, ADDRESSES, reversed(ADDRESSES), strict=True
        ):
            _ip("netns", "add", host)
            fds.append(_tun(device))
            # The device keeps its file descriptor (held here) when it moves namespace.
            _ip("link", "set", device, "netns", host)
            _ip("-n", host, "addr", "add", address, "peer", peer, "dev", device)
            _ip("-n", host, "link", "set", device, "mtu", str(MTU), "up")
            _ip("-n", host, "link", "set", "lo", "up")
        directions = [Direction(fds[0], fds[1], link), Direction(fds[1], fds[0], link)]
        for direction in directions:
            for target in (direction.read, direction.write):
                thread = threading.Thread(target=target, args=(stop,), daemon=True)
                thread.start()
                threads.append(thread)
        yield hosts, directions
    finally:
        stop.set()
        for host in hosts:
            subprocess.run(["ip", "netns", "delete", host], capture_output=True, timeout=30)
        for fd in fds:
            os.close(fd)  # ends the readers' os.read; the TUN devices go with their fds
        for thread in threads:
            thread.join(timeout=5)
