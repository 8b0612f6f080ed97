"""The cloud link: the controller's messages to the hub and the hub's commands to it.

`queue` is the store-and-forward message queue: every message is written to SQLite before the
SDK sees it and removed only once the hub has acknowledged it, so a link that was down, or a
process that was killed, loses nothing. This package's `__init__` imports nothing.
"""
