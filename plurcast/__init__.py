"""Plurcast: publish and schedule posts to Nostr, Mastodon and Bluesky."""

__version__ = "0.1.0"
