"""Linux native AIO (io_setup, io_submit, io_getevents) through raw syscalls, for O_DIRECT
tests that must submit writes asynchronously; Debian's base image has no libaio."""

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)
_SYS_IO_SETUP, _SYS_IO_DESTROY, _SYS_IO_GETEVENTS, _SYS_IO_SUBMIT = 206, 207, 208, 209  # x86-64
_IOCB_CMD_PWRITE = 1


class _Iocb(ctypes.Structure):
    _fields_ = [("aio_data", ctypes.c_uint64), ("aio_key", ctypes.c_uint32),
                ("aio_rw_flags", ctypes.c_int32), ("aio_lio_opcode", ctypes.c_uint16),
                ("aio_reqprio", ctypes.c_int16), ("aio_fildes", ctypes.c_uint32),
                ("aio_buf", ctypes.c_uint64), ("aio_nbytes", ctypes.c_uint64),
                ("aio_offset", ctypes.c_int64), ("aio_reserved2", ctypes.c_uint64),
                ("aio_flags", ctypes.c_uint32), ("aio_resfd", ctypes.c_uint32)]


class _IoEvent(ctypes.Structure):
    _fields_ = [("data", ctypes.c_uint64), ("obj", ctypes.c_uint64),
                ("res", ctypes.c_int64), ("res2", ctypes.c_int64)]


def _check(rc, what):
    if rc < 0:
        e = ctypes.get_errno()
        raise OSError(e, "%s: %s" % (what, os.strerror(e)))
    return rc


def aio_pwrite_all(fd, writes):
    """Submits every (buffer, offset) of writes at once as AIO writes on fd (buffers must be
    page-aligned for O_DIRECT: mmap objects), waits for all; the result of each."""
    ctx = ctypes.c_ulong(0)
    _check(_libc.syscall(_SYS_IO_SETUP, len(writes), ctypes.byref(ctx)), "io_setup")
    try:
        cbs = (_Iocb * len(writes))()
        ptrs = (ctypes.POINTER(_Iocb) * len(writes))()
        for i, (buf, off) in enumerate(writes):
            cbs[i].aio_lio_opcode = _IOCB_CMD_PWRITE
            cbs[i].aio_fildes = fd
            cbs[i].aio_buf = ctypes.addressof(ctypes.c_char.from_buffer(buf))
            cbs[i].aio_nbytes = len(buf)
            cbs[i].aio_offset = off
            cbs[i].aio_data = i
            ptrs[i] = ctypes.pointer(cbs[i])
        n = _check(_libc.syscall(_SYS_IO_SUBMIT, ctx, ctypes.c_long(len(writes)), ptrs),
                   "io_submit")
        if n != len(writes):
            raise OSError(0, "io_submit took %d of %d writes" % (n, len(writes)))
        events = (_IoEvent * len(writes))()
        got = 0
        while got < len(writes):
            got += _check(_libc.syscall(
                _SYS_IO_GETEVENTS, ctx, ctypes.c_long(1), ctypes.c_long(len(writes) - got),
                ctypes.byref(events, got * ctypes.sizeof(_IoEvent)), None), "io_getevents")
        res = [0] * len(writes)
        for e in events:
            res[e.data] = e.res
        return res
    finally:
        _libc.syscall(_SYS_IO_DESTROY, ctx)
