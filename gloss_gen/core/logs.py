"""Logging helpers shared by the layers above."""

from __future__ import annotations

import logging


class quiet_root_logger:
    """Silence the root logger inside a ``with`` block (libraries that log through it while loading)."""

    def __enter__(self):
        self.level = logging.root.level
        logging.root.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        logging.root.setLevel(self.level)
