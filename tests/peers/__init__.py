"""Real local peers (servers on 127.0.0.1) that the tests publish to instead of the internet.

`tests.peers.nostr` runs a real Nostr relay (PyPI `nostr-relay`) in its own cached virtualenv,
and nostr-sdk's in-process relay; `tests.peers.fixtures` wraps both as pytest fixtures.
"""
