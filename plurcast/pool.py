"""Who publishes, and how many at once: one publisher per (platform, account), and each
platform's slots for deliveries on the wire."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable

from plurcast.config import Config
from plurcast.platforms import registry
from plurcast.platforms.base import Publisher

log = logging.getLogger("plurcast.engine")  # the name these lines always had in the logs

Factory = Callable[[Config, str], Publisher]


def default_factories() -> dict[str, Factory]:
    """Every registered platform's publisher factory, by name."""
    return {p.name: p.publisher for p in registry.PLATFORMS}


class PublisherPool:
    """One connected publisher per (platform, account), made on first use and reused."""

    def __init__(self, cfg: Config, factories: dict[str, Factory] | None = None) -> None:
        self.cfg = cfg
        self.factories = default_factories() if factories is None else factories
        self._publishers: dict[tuple[str, str], Publisher] = {}

    @property
    def platforms(self) -> tuple[str, ...]:
        return tuple(self.factories)

    def get(self, platform: str, account: str) -> Publisher:
        key = (platform, account)
        if key not in self._publishers:
            self._publishers[key] = self.factories[platform](self.cfg, account)
        return self._publishers[key]

    def made(self, platform: str, account: str) -> Publisher | None:
        """The publisher of (platform, account) if `get` made it already, else None."""
        return self._publishers.get((platform, account))

    async def close(self) -> None:
        publishers, self._publishers = list(self._publishers.values()), {}
        for publisher in publishers:
            try:
                await publisher.close()
            except Exception as exc:  # a client that fails to close must not stop the others
                log.warning("closing %s/%s failed: %s", publisher.platform, publisher.account, exc)


class Lanes:
    """Deliveries on the wire per platform, each platform with `size` slots.

    A relay, instance or PDS that is down or hangs fills only its own platform's slots:
    posts for the other platforms still find one and go out on time (G4).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._busy: Counter[str] = Counter()

    def room(self, platform: str) -> int:
        return self.size - self._busy[platform]

    def free(self, platforms: Iterable[str]) -> dict[str, int]:
        return {p: self.room(p) for p in platforms}

    def take(self, platform: str) -> None:
        self._busy[platform] += 1

    def give(self, platform: str) -> None:
        self._busy[platform] -= 1
        if self._busy[platform] <= 0:
            del self._busy[platform]
