"""Threads and replies: cutting text into parts, and reading what a reply points at.

`split` turns a text into the parts of a thread by one platform's own way of counting;
`references` reads a `--reply-to` reference. Both are pure: no database, no network.
"""
