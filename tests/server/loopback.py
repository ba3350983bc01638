"""What a test "host" is: one loopback listener, a distinct ``ip:port`` origin.

``"ports"`` lays N hosts out on 127.0.0.1 with a port each; ``"addresses"`` on
127.0.0.2 .. 127.0.0.(N+1) sharing one port (Linux routes all of 127/8 to loopback).
"""

from __future__ import annotations

from typing import Literal

AddressMode = Literal["ports", "addresses"]

LOOPBACK = "127.0.0.1"
