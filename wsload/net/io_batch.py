"""Let network events gather before a busy generator process wakes to read them.

A process holding thousands of sessions is woken by nearly every packet: during a ramp each
wake finds one or two sessions ready, and with a dozen such processes sharing two cores each
wake also costs a context switch and caches refilled with another process's heap. Measured on
a ramp to 100,000 sessions on 2 cores, that made a session cost the generator 2.7 times what
it costs one process alone. libev can instead sleep out the rest of an interval before it
polls again (``ev_set_io_collect_interval``), so one wake serves every socket that became
ready meanwhile: on that ramp a third less CPU per session for the generator and a quarter
less for the target beside it.

Only the reading is late, never the measurement: arrivals carry the kernel's receive time
(``SO_TIMESTAMPNS``) and a connect the kernel's SYN to SYN-ACK time (``TCP_INFO``), and the
upgrade's clock starts when its request is sent. Timers still fire on time (libev caps the
sleep at the next timer), so heartbeats leave when due. A read timed on waking (``wss://``,
where the TLS layer hides the kernel's stamps) would carry the delay, so callers batch only
where arrivals are kernel-stamped.

gevent exposes no call for it; its default loop on Linux is libev compiled into
``gevent.libev.corecext``, which exports the C function, and the loop's ``ptr`` is the
``struct ev_loop *`` it takes. Elsewhere (libuv, the CFFI build) nothing is changed.
"""

from __future__ import annotations

import ctypes

import gevent


def batch_io(interval_s: float) -> bool:
    """Make this process's gevent loop poll at most once per ``interval_s`` while busy;
    False (and nothing changed) where the loop is not gevent's compiled libev."""
    try:
        from gevent.libev import corecext
    except ImportError:
        return False
    loop = gevent.get_hub().loop
    if not isinstance(loop, corecext.loop):
        return False
    try:
        collect = ctypes.CDLL(corecext.__file__).ev_set_io_collect_interval
    except (OSError, AttributeError):
        return False
    collect.argtypes = [ctypes.c_void_p, ctypes.c_double]
    collect.restype = None
    collect(loop.ptr, max(0.0, interval_s))
    return True
