"""Round-robin of new connections over the ``--workers`` sharing one port.

With ``so_reuseport`` the kernel picks a worker for each new connection by a
hash of its addresses and ports, without counting what each worker holds:
16 connections over 2 workers split anywhere from 8/8 to 12/4, and the
worker with more saturates its one interpreter while the other has room.
This module attaches a small eBPF program to the port's reuseport group
(``SO_ATTACH_REUSEPORT_EBPF``) that hands new connections to the group's
sockets in turn instead: a counter in a one-entry array map, read and
incremented per connection, modulo the number of workers.

Notes
-----
Linux only, and loading an eBPF program needs ``CAP_BPF`` (or
``CAP_SYS_ADMIN``) unless the kernel allows unprivileged BPF, which most
distributions turn off (``kernel.unprivileged_bpf_disabled``). Without it
``attach`` returns the reason and the kernel's hash stays in charge; the
worker logs which one holds. Two connections that arrive on two cores at
the same instant can read the same count (the read and the increment are
two steps), so a turn is occasionally taken twice. The program balances
new connections, not requests: a connection stays with its worker, and
connections that close unevenly are not made up for. While a worker is
being replaced the group has one socket fewer; a turn that names the
missing one falls back to the kernel's hash.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import socket
import struct

SO_ATTACH_REUSEPORT_EBPF = 52
"""From the kernel's asm-generic/socket.h (x86, arm64 and most others)."""

_BPF_SYSCALL = {"x86_64": 321, "aarch64": 280}
_BPF_MAP_CREATE, _BPF_PROG_LOAD = 0, 5
_BPF_MAP_TYPE_ARRAY = 2
_BPF_PROG_TYPE_SOCKET_FILTER = 1
_BPF_PSEUDO_MAP_FD = 1
_NO_SOCKET = -1
"""An index past the group's sockets (as a u32, 0xFFFFFFFF): the kernel
then uses its hash."""


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    # struct bpf_insn: u8 code, u8 dst:4 | src:4, s16 off, s32 imm.
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def program(map_fd: int, sockets: int) -> bytes:
    """Return the eBPF instructions that pick socket ``count % sockets``.

    ``count`` is the first u32 of the array map ``map_fd``, incremented on
    every run. The program's return value is the index of the socket in
    the reuseport group; a map look-up that fails returns ``_NO_SOCKET``.
    """
    if not 1 <= sockets < 1 << 31:
        raise ValueError(f"sockets: got {sockets}; expected at least 1")
    return b"".join((
        _insn(0x62, dst=10, off=-4, imm=0),  # *(u32 *)(r10 - 4) = 0: the key
        _insn(0xBF, dst=2, src=10),  # r2 = r10
        _insn(0x07, dst=2, imm=-4),  # r2 += -4: &key
        _insn(0x18, dst=1, src=_BPF_PSEUDO_MAP_FD, imm=map_fd),  # r1 = map
        _insn(0x00),  # (the upper half of the 64-bit load)
        _insn(0x85, imm=1),  # r0 = bpf_map_lookup_elem(r1, r2)
        _insn(0x15, dst=0, off=6, imm=0),  # if r0 == 0: to the fallback
        _insn(0x61, dst=1, src=0),  # w1 = *(u32 *)r0: this turn
        _insn(0xB4, dst=2, imm=1),  # w2 = 1
        _insn(0xC3, dst=0, src=2),  # lock *(u32 *)r0 += w2
        _insn(0xBC, dst=0, src=1),  # w0 = w1
        _insn(0x94, dst=0, imm=sockets),  # w0 %= sockets
        _insn(0x95),  # return w0
        _insn(0xB4, dst=0, imm=_NO_SOCKET),  # fallback: w0 = _NO_SOCKET
        _insn(0x95),  # return w0
    ))


def _bpf(command: int, attr: bytes) -> int:
    """Call bpf(2) with ``attr``; return its result or raise OSError."""
    number = _BPF_SYSCALL.get(platform.machine())
    if number is None:
        raise OSError(errno.ENOSYS, f"bpf(2) number unknown on {platform.machine()}")
    # The process's own symbols hold libc's syscall(); find_library would
    # run ldconfig in a subprocess on every call.
    libc = ctypes.CDLL(None, use_errno=True)
    buffer = ctypes.create_string_buffer(attr, 128)
    result = libc.syscall(number, command, buffer, 128)
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def load(sockets: int) -> int:
    """Load the round-robin program for ``sockets`` sockets; return its fd.

    Raises
    ------
    OSError
        When the kernel refuses (no BPF permission, no bpf(2)).
    """
    # union bpf_attr for BPF_MAP_CREATE: type, key size, value size, entries.
    map_fd = _bpf(_BPF_MAP_CREATE, struct.pack("<IIII", _BPF_MAP_TYPE_ARRAY, 4, 4, 1))
    try:
        code = program(map_fd, sockets)
        instructions = ctypes.create_string_buffer(code, len(code))
        license_text = ctypes.create_string_buffer(b"Apache-2.0")
        # BPF_PROG_LOAD: type, instruction count, instructions, license.
        attr = struct.pack(
            "<IIQQ",
            _BPF_PROG_TYPE_SOCKET_FILTER,
            len(code) // 8,
            ctypes.addressof(instructions),
            ctypes.addressof(license_text),
        )
        return _bpf(_BPF_PROG_LOAD, attr)
    finally:
        # The program holds the map now; this descriptor is not needed.
        os.close(map_fd)


def listening_sockets(port: int) -> list[socket.socket]:
    """Duplicates of this process's TCP sockets listening on ``port``.

    gRPC opens its listening sockets itself; they are found among the
    process's descriptors. The caller closes the duplicates.
    """
    found, seen = [], set()
    for name in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{name}")
            # A duplicate made below can reuse a number listed above: the
            # socket's inode (in the link) tells each socket once.
            if not link.startswith("socket:") or link in seen:
                continue
            seen.add(link)
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue  # closed meanwhile, or not a socket we can use
        try:
            listening = (
                sock.family in (socket.AF_INET, socket.AF_INET6)
                and sock.type == socket.SOCK_STREAM
                and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                and sock.getsockname()[1] == port
            )
        except OSError:
            listening = False
        if listening:
            found.append(sock)
        else:
            sock.close()
    return found


def attach(port: int, sockets: int) -> str:
    """Hand new connections on ``port`` to its ``sockets`` sockets in turn.

    Returns "round_robin" once the program is attached to the port's
    reuseport group, else "kernel_hash" and the reason, e.g.
    "kernel_hash (bpf: Operation not permitted)". Never raises: without the
    program, serving goes on as before.
    """
    try:
        prog_fd = load(sockets)
    except OSError as error:
        return f"kernel_hash (bpf: {error.strerror or error})"
    try:
        found = listening_sockets(port)
        if not found:
            return f"kernel_hash (no socket listening on port {port})"
        try:
            for sock in found:
                sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, prog_fd)
        except OSError as error:
            return f"kernel_hash (attach: {error.strerror or error})"
        finally:
            for sock in found:
                sock.close()
    finally:
        # The group holds the program now.
        os.close(prog_fd)
    return "round_robin"
