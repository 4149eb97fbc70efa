"""Synesthesia engine: live audio -> emotion -> shared audio–art space -> images, OSC and ZeroMQ.

Importing this package is cheap and has no side effects; heavy or optional pieces (torch, PortAudio,
pygame, TensorRT) are imported where they are used.
"""

__version__ = "0.1.0"
