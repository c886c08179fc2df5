"""Seed derivation: one master seed derives every child seed, with no global RNG state."""

from __future__ import annotations

import zlib

import numpy as np


def child_seed(master: int, *keys: int | str) -> int:
    """A 63-bit seed derived from ``master`` and ``keys`` (strings hashed stably with CRC32).

    The same inputs give the same seed in every process and Python version.
    """
    words = [int(master) & 0xFFFFFFFF] + [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in keys]
    state = np.random.SeedSequence(words).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)
