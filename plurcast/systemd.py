"""sd_notify from inside plur-send: READY, STATUS, WATCHDOG and STOPPING for systemd.

Under a `Type=notify` unit systemd names a datagram socket in `NOTIFY_SOCKET` and, with
`WatchdogSec=`, the deadline in `WATCHDOG_USEC`. Outside systemd `NOTIFY_SOCKET` is unset and
every call here does nothing, so the daemon calls the notifier unconditionally.

Messages go through systemd-python (`systemd.daemon.notify`, the `systemd` extra) when it is
installed, else through a few lines of stdlib that speak the same protocol: one datagram per
message to the socket, an address starting with `@` being in the abstract namespace.

The daemon calls `watchdog()` on every tick of its loop and whenever a delivery hands its lane
to the next one, so the pings stop when the event loop stops — which is the point: a thread
pinging on a timer would keep a hung daemon "alive".
Pings are rate-limited here to every `WATCHDOG_USEC / 2`, as sd_watchdog_enabled(3) advises.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import time
from collections.abc import Callable, Mapping

from plurcast.daemon import Notifier

log = logging.getLogger("plurcast.systemd")

Send = Callable[[str], None]


def stdlib_sender(address: str) -> Send:
    """Send each message as one datagram to `address` (sd_notify's protocol, no libsystemd)."""
    import socket  # only under systemd: a plain run has no one to tell

    target = "\0" + address[1:] if address.startswith("@") else address

    def send(message: str) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(target)
            sock.sendall(message.encode())

    return send


def libsystemd_sender() -> Send | None:
    """systemd-python's sd_notify, or None when the `systemd` extra is not installed."""
    try:
        daemon = importlib.import_module("systemd.daemon")
    except ImportError:
        return None

    def send(message: str) -> None:
        if not daemon.notify(message):
            raise OSError(f"sd_notify({message!r}) reached no one")

    return send


class SystemdNotifier(Notifier):
    """Tells systemd how the daemon is doing; silent when not started by systemd."""

    def __init__(
        self,
        *,
        sender: Send | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Read systemd's variables now; `sender` replaces the transport (libsystemd or stdlib)."""
        address = os.environ.get("NOTIFY_SOCKET") or None
        self._send = None if address is None else sender or _default_sender(address)
        self.watchdog_interval = _watchdog_interval(os.environ) if self._send else None
        self._clock = clock
        self._last_ping = -math.inf
        self._failed = False

    @property
    def active(self) -> bool:
        return self._send is not None

    def ready(self) -> None:
        self._notify("READY=1")

    def status(self, text: str) -> None:
        self._notify("STATUS=" + " ".join(text.split()))  # one line, as systemctl shows it

    def watchdog(self) -> None:
        if self.watchdog_interval is None:
            return
        now = self._clock()
        if now - self._last_ping >= self.watchdog_interval:
            self._last_ping = now
            self._notify("WATCHDOG=1")

    def stopping(self) -> None:
        self._notify("STOPPING=1")

    def _notify(self, message: str) -> None:
        if self._send is None:
            return
        try:
            self._send(message)
        except OSError as exc:
            # Losing a notification must never stop deliveries; systemd will act on the silence.
            # Said once: the same failure every few seconds would bury the log.
            level = logging.DEBUG if self._failed else logging.WARNING
            self._failed = True
            log.log(level, "could not notify systemd (%s): %s", message.partition("=")[0], exc)


def _default_sender(address: str) -> Send:
    return libsystemd_sender() or stdlib_sender(address)


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds between pings, or None when no watchdog is asked of this process.

    `WATCHDOG_PID` names the process the watchdog is for; a child that inherited the
    variables of its parent must not ping for it.
    """
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 2 / 1_000_000
