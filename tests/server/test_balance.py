"""Round-robin of new connections over sockets sharing a port (eBPF)."""

import os
import re
import socket

import grpc
import pytest
from conftest import tensor

from alquery.client.local import LocalServer
from alquery.server import balance
from alquery.v1 import query_pb2, query_pb2_grpc

U = query_pb2.UncertaintyStrategy
WORKER_LINE = re.compile(
    r"pid=(\d+) worker serving shared_port=\d+ .*connection_balancing=(\S+)"
)


def reuseport_group(size):
    """``size`` listening sockets sharing one loopback port."""
    group = []
    for _ in range(size):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", group[0].getsockname()[1] if group else 0))
        sock.listen(64)
        group.append(sock)
    return group


def accepted(sock):
    """How many connections wait in ``sock``'s accept queue."""
    sock.setblocking(False)
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def attach_or_skip(port, sockets):
    outcome = balance.attach(port, sockets)
    if outcome != "round_robin":
        pytest.skip(f"no eBPF here: {outcome}")
    return outcome


@pytest.mark.parametrize("sockets, connections", [(2, 16), (3, 12), (4, 9)])
def test_new_connections_go_to_the_sockets_in_turn(sockets, connections):
    group = reuseport_group(sockets)
    port = group[0].getsockname()[1]
    try:
        attach_or_skip(port, sockets)
        clients = [
            socket.create_connection(("127.0.0.1", port))
            for _ in range(connections)
        ]
        counts = sorted((accepted(sock) for sock in group), reverse=True)
        for client in clients:
            client.close()
    finally:
        for sock in group:
            sock.close()
    # One client connecting after another: the turns go round exactly.
    base, extra = divmod(connections, sockets)
    assert counts == [base + 1] * extra + [base] * (sockets - extra)


def test_listening_sockets_finds_the_group_and_nothing_else():
    group = reuseport_group(2)
    port = group[0].getsockname()[1]
    other = reuseport_group(1)
    try:
        found = balance.listening_sockets(port)
        assert len(found) == 2
        assert {s.getsockname()[1] for s in found} == {port}
        for sock in found:
            sock.close()
    finally:
        for sock in group + other:
            sock.close()


def test_a_port_nothing_listens_on_keeps_the_kernel_hash():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        outcome = balance.attach(port, 2)
    assert outcome.startswith("kernel_hash (")


@pytest.mark.parametrize("sockets", [0, -1])
def test_a_program_needs_at_least_one_socket(sockets):
    with pytest.raises(ValueError, match="sockets: got"):
        balance.program(3, sockets)


def connections_of(pid, port):
    """Established TCP connections to ``port`` that process ``pid`` holds."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as file:
            for row in file.readlines()[1:]:
                fields = row.split()
                local_port = int(fields[1].rpartition(":")[2], 16)
                # State 01: established; field 9: the socket's inode.
                if local_port == port and fields[3] == "01" and fields[9] in inodes:
                    count += 1
    return count


def test_two_workers_get_eight_of_sixteen_client_connections_each():
    request = query_pb2.RankRequest(
        pool=query_pb2.Pool(probabilities=tensor([[0.6, 0.4], [0.9, 0.1]])),
        uncertainty=U(method=U.METHOD_MARGIN),
        batch_size=1,
    )
    with LocalServer(["--workers", "2", "--grace-seconds", "5"]) as server:
        channels = []
        try:
            for _ in range(16):
                channel = grpc.insecure_channel(
                    server.target, options=[("grpc.use_local_subchannel_pool", 1)]
                )
                channels.append(channel)
                stub = query_pb2_grpc.QueryServiceStub(channel)
                assert stub.Rank(request, timeout=30).ranked_indices == [0]
            workers = [
                m.groups() for line in server.log if (m := WORKER_LINE.search(line))
            ]
            assert len(workers) == 2
            outcomes = {outcome for _, outcome in workers}
            if outcomes != {"round_robin"}:
                pytest.skip(f"no eBPF here: {outcomes}")
            counts = [connections_of(int(pid), server.port) for pid, _ in workers]
        finally:
            for channel in channels:
                channel.close()
    assert counts == [8, 8]
