"""multiprocessing's shared objects in shared memory, from the shmprim Rust crate.

Change ``import multiprocessing as mp`` (or ``from multiprocessing import
Queue, ...``) to take these names from ``shmprim``; processes still come from
``multiprocessing`` (``Process``, ``Pool``, every start method). Every object
pickles by the name of its shared-memory segment, so it can be passed to a
child process or a pool task.

An addition: a lock whose holder died is not lost. ``acquire()`` (and
``with lock:``) raises :class:`OwnerDiedError` with the lock held by the
caller, who repairs what it guards and then calls ``release()``.
"""

from ._native import (
    Array,
    Barrier,
    BoundedSemaphore,
    Condition,
    Connection,
    Dict,
    Event,
    JoinableQueue,
    List,
    Lock,
    OwnerDiedError,
    Pipe,
    Queue,
    RLock,
    Semaphore,
    SimpleQueue,
    Value,
)
from . import shared_memory

__all__ = [
    "Array",
    "Barrier",
    "BoundedSemaphore",
    "Condition",
    "Connection",
    "Dict",
    "Event",
    "JoinableQueue",
    "List",
    "Lock",
    "OwnerDiedError",
    "Pipe",
    "Queue",
    "RLock",
    "Semaphore",
    "SimpleQueue",
    "Value",
    "shared_memory",
]
