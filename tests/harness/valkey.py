"""Real valkey-server processes for tests: one standalone server, or a 3×2 Redis Cluster.

Both are built on bridge.embedded.EmbeddedValkey (one launch path for production and tests). The cluster
is formed with plain CLUSTER commands (no cluster CLI), every wait is bounded, and every process is
reaped on stop() — also when start() fails half-way.

Redis clients here are created per call: fixtures may start servers in one event loop (session scope)
while tests drive them from another, and a redis.asyncio connection is tied to its loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aredis

from bridge.embedded import EmbeddedValkey, EmbeddedValkeyError, free_port

__all__ = ["SLOT_RANGES", "ValkeyCluster", "flushall", "start_valkey"]

HOST = "127.0.0.1"
SLOT_RANGES: tuple[tuple[int, int], ...] = ((0, 5460), (5461, 10922), (10923, 16383))
_CLIENT_TIMEOUT_S = 1.0


async def start_valkey(data_dir: Path, *, appendonly: bool = True, timeout_s: float = 10) -> EmbeddedValkey:
    """One standalone server on a free port (persisting to data_dir); stop it with `await server.stop()`."""
    server = EmbeddedValkey(data_dir, appendonly=appendonly)
    await server.start(timeout_s=timeout_s)
    return server


async def flushall(url: str) -> None:
    """Empty every database of the server at `url` (the per-test reset of the shared session server)."""
    client = aredis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=_CLIENT_TIMEOUT_S)
    try:
        await client.flushall()
    finally:
        await client.aclose()


def _parse_info(text: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))


class ValkeyCluster:
    """3 primaries + 3 replicas (by default) of the real valkey-server on 127.0.0.1.

    Ports are kept for the life of the object: kill_node(port) crashes a node, restart_node(port) brings it
    back with its nodes.conf (it rejoins, as a replica of whoever took over its slots).
    """

    def __init__(
        self,
        base_dir: Path,
        *,
        primaries: int = 3,
        node_timeout_ms: int = 1000,
        extra_args: Sequence[str] = (),
    ) -> None:
        if primaries != len(SLOT_RANGES):
            raise ValueError(f"the slot layout is fixed to {len(SLOT_RANGES)} primaries")
        self.base_dir = Path(base_dir)
        self.node_timeout_ms = node_timeout_ms
        self.extra_args = tuple(extra_args)
        self.nodes: dict[int, EmbeddedValkey] = {}
        self.primary_ports: list[int] = []  # initial roles; failover may change them
        self.replica_ports: list[int] = []  # replica_ports[i] replicates primary_ports[i] at formation
        self._killed: set[int] = set()
        self._primaries = primaries

    # -- properties ---------------------------------------------------------------------------------

    @property
    def ports(self) -> list[int]:
        return [*self.primary_ports, *self.replica_ports]

    @property
    def alive_ports(self) -> list[int]:
        return [p for p in self.ports if p not in self._killed and self.nodes[p].running]

    @property
    def seed_url(self) -> str:
        """redis://127.0.0.1:PORT of a live node, for RedisCluster.from_url()."""
        alive = self.alive_ports
        if not alive:
            raise RuntimeError("no live cluster node")
        return f"redis://{HOST}:{alive[0]}"

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(HOST, p) for p in self.alive_ports]

    # -- low level ----------------------------------------------------------------------------------

    async def _cmd(self, port: int, *args: Any) -> Any:
        client = aredis.Redis(
            host=HOST,
            port=port,
            decode_responses=True,
            socket_timeout=_CLIENT_TIMEOUT_S,
            socket_connect_timeout=_CLIENT_TIMEOUT_S,
        )
        try:
            return await client.execute_command(*args)
        finally:
            await client.aclose()

    async def _info(self, port: int, section: str) -> dict[str, Any]:
        """INFO <section> as redis-py parses it (nested dicts for slaveN lines)."""
        client = aredis.Redis(
            host=HOST, port=port, socket_timeout=_CLIENT_TIMEOUT_S, socket_connect_timeout=_CLIENT_TIMEOUT_S
        )
        try:
            return await client.info(section)
        finally:
            await client.aclose()

    def _node_args(self, port: int) -> list[str]:
        return [
            "--cluster-enabled", "yes",
            "--cluster-node-timeout", str(self.node_timeout_ms),
            "--cluster-config-file", f"nodes-{port}.conf",
            "--cluster-announce-ip", HOST,
            # A replica's first full sync would otherwise wait repl-diskless-sync-delay (5 s by default).
            "--repl-diskless-sync-delay", "0",
            *self.extra_args,
        ]  # fmt: skip

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self, timeout_s: float = 30) -> str:
        """Launch 6 nodes, form the cluster, wait until healthy; return seed_url. Cleans up on failure."""
        if self.nodes:
            raise RuntimeError("cluster already started")
        deadline = time.monotonic() + timeout_s
        ports = [free_port(HOST, cluster_bus=True) for _ in range(self._primaries * 2)]
        try:
            results = await asyncio.gather(
                *(self._launch(ports, i) for i in range(len(ports))), return_exceptions=True
            )
            self.primary_ports = ports[: self._primaries]
            self.replica_ports = ports[self._primaries :]
            for result in results:  # all starts settled before we raise: nothing left half-started
                if isinstance(result, BaseException):
                    raise result
            await self._form(deadline)
        except BaseException:
            await self.stop()
            raise
        return self.seed_url

    async def _launch(self, ports: list[int], index: int, attempts: int = 3) -> None:
        """Start node `index`; if its port (or bus port) was taken meanwhile, move it to a fresh one."""
        for attempt in range(attempts):
            port = ports[index]
            node = EmbeddedValkey(
                self.base_dir / f"node-{port}", port=port, appendonly=False, extra_args=self._node_args(port)
            )
            self.nodes[port] = node  # registered before start: stop() must reach it whatever happens
            try:
                await node.start(timeout_s=10)
                return
            except EmbeddedValkeyError as e:
                if "already in use" not in str(e) or attempt == attempts - 1:
                    raise
                del self.nodes[port]
                ports[index] = free_port(HOST, cluster_bus=True)

    async def _form(self, deadline: float) -> None:
        for epoch, (port, (first, last)) in enumerate(zip(self.primary_ports, SLOT_RANGES, strict=True), 1):
            await self._cmd(port, "CLUSTER", "SET-CONFIG-EPOCH", epoch)  # distinct epochs: no collisions
            await self._cmd(port, "CLUSTER", "ADDSLOTSRANGE", first, last)
        seed = self.ports[0]
        for port in self.ports[1:]:
            await self._cmd(seed, "CLUSTER", "MEET", HOST, port)
        await self._until(deadline, self._all_know_each_other, "all nodes to know each other")
        for primary, replica in zip(self.primary_ports, self.replica_ports, strict=True):
            primary_id = await self._cmd(primary, "CLUSTER", "MYID")
            await self._cmd(replica, "CLUSTER", "REPLICATE", primary_id)
        await self._until(
            deadline, lambda: self._healthy(require_replicas=True), "cluster_state:ok with replicas"
        )

    async def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL); idempotent and safe after a failed start()."""
        await asyncio.gather(
            *(node.stop(timeout_s=3) for node in self.nodes.values()), return_exceptions=True
        )

    def kill_node(self, port: int) -> None:
        """SIGKILL one node (a crash: no goodbye to the cluster)."""
        self._killed.add(port)
        self.nodes[port].kill()

    async def restart_node(self, port: int, timeout_s: float = 10) -> None:
        """Start a killed/stopped node again on its port and dir; it rejoins with its nodes.conf."""
        node = self.nodes[port]
        await node.stop(timeout_s=3)  # reap the killed process
        await node.start(timeout_s=timeout_s)
        self._killed.discard(port)

    # -- health -------------------------------------------------------------------------------------

    async def _until(self, deadline: float, check: Any, what: str) -> None:
        last_error: BaseException | None = None
        while True:
            try:
                if await check():
                    return
            except (redis.RedisError, OSError) as e:
                last_error = e
            if time.monotonic() >= deadline:
                raise EmbeddedValkeyError(
                    f"cluster: timed out waiting for {what} (last error: {last_error!r})"
                )
            await asyncio.sleep(0.05)

    async def _all_know_each_other(self) -> bool:
        expected = len(self.ports)
        for port in self.ports:
            lines = (await self._cmd(port, "CLUSTER", "NODES")).splitlines()
            if len(lines) != expected or any("handshake" in ln or "noaddr" in ln for ln in lines):
                return False
        return True

    async def _healthy(self, *, require_replicas: bool = False) -> bool:
        alive = self.alive_ports
        for port in alive:
            info = _parse_info(await self._cmd(port, "CLUSTER", "INFO"))
            if info.get("cluster_state") != "ok":
                return False
            # every slot range served by a live primary, in this node's own view
            for entry in await self._cmd(port, "CLUSTER", "SLOTS"):
                owner_port = int(entry[2][1])
                if owner_port not in alive:
                    return False
                if require_replicas and len(entry) < 4:
                    return False
        if require_replicas:
            for port in self.primary_ports:
                repl = await self._info(port, "replication")
                if repl.get("role") != "master" or int(repl.get("connected_slaves", 0)) < 1:
                    return False
                replica = repl.get("slave0")
                if not isinstance(replica, dict) or replica.get("state") != "online":
                    return False
        return True

    async def wait_ok(self, timeout_s: float = 10, *, require_replicas: bool = False) -> None:
        """Wait (bounded) until every live node says cluster_state:ok and maps all slots to live primaries."""
        await self._until(
            time.monotonic() + timeout_s,
            lambda: self._healthy(require_replicas=require_replicas),
            "cluster_state:ok",
        )

    async def roles(self) -> dict[int, str]:
        """port → "master" / "slave" for every live node, as each node reports it."""
        out = {}
        for port in self.alive_ports:
            out[port] = str((await self._info(port, "replication")).get("role", "?"))
        return out

    def primary_for_key(self, key: str | bytes) -> int:
        """Port of the primary currently serving `key` (CLUSTER KEYSLOT + CLUSTER SLOTS on a live node)."""
        last_error: Exception | None = None
        for port in self.alive_ports:
            client = redis.Redis(
                host=HOST,
                port=port,
                socket_timeout=_CLIENT_TIMEOUT_S,
                socket_connect_timeout=_CLIENT_TIMEOUT_S,
            )
            try:
                slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
                for entry in client.execute_command("CLUSTER", "SLOTS"):
                    if int(entry[0]) <= slot <= int(entry[1]):
                        return int(entry[2][1])
            except (redis.RedisError, OSError) as e:
                last_error = e
            finally:
                with contextlib.suppress(Exception):
                    client.close()
        raise RuntimeError(f"no live node could map {key!r} to a primary (last error: {last_error!r})")

    def __repr__(self) -> str:
        killed = sorted(self._killed)
        return (
            f"ValkeyCluster(primaries={self.primary_ports}, replicas={self.replica_ports}, killed={killed})"
        )
