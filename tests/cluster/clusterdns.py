"""Cluster DNS for the test cluster: `<service>.<namespace>.svc.cluster.local` resolved from the Service's
EndpointSlices, served two ways.

- To pods, as a DNS server on the node's address (`serve_dns`): the pod runner writes each pod's
  /etc/resolv.conf as a kubelet does for `dnsPolicy: ClusterFirst` (search path, ndots:5), so a worker
  joins its head and the operator reads a fleet's dashboard by Service name, as in a cluster. There is no
  kube-proxy: a Service name answers with the addresses of its ready pods (of every pod, for a headless
  Service that publishes not-ready ones), not with a cluster IP; the Services here use the same port on the
  Service and on the pod.
- To the KubeRay operator, which runs on this machine rather than in a pod: it reaches a head's dashboard at
  the name it builds for the head Service (`FetchHeadServiceURL`), with Go's plain HTTP client, which honours
  `HTTP_PROXY` for such names (and never proxies loopback), so it runs with HTTP_PROXY pointing at
  `serve_proxy`, which resolves the name and forwards the request. Chosen over the API server's service
  proxy, which KubeRay also supports (`--use-kubernetes-proxy`), because then KubeRay would not do what it
  does in a cluster: build the DNS name and connect to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("clusterdns")
CLUSTER_DOMAIN = "cluster.local"
SERVICE_NAME = re.compile(
    rf"\b([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.svc\.{re.escape(CLUSTER_DOMAIN)}\b"
)
MAX_HEAD_BYTES = 64 * 1024


class Resolver:
    """Service DNS names to pod addresses, through the API (EndpointSlices of the Service)."""

    def __init__(self, discovery: Any, core: Any) -> None:
        self.discovery, self.core = discovery, core

    def _lookup(self, host: str, port: int | None) -> tuple[bool, list[tuple[str, int | None]]]:
        """(the name is a Service, [(pod IP, target port)] of the pods behind it). Headless Services
        (KubeRay's head Service) publish not-ready addresses too, as their DNS does."""
        found = SERVICE_NAME.fullmatch(host.rstrip("."))
        if found is None:
            return False, []
        service, namespace = found.group(1), found.group(3)
        try:
            svc = self.core.read_namespaced_service(service, namespace)
            slices = self.discovery.list_namespaced_endpoint_slice(
                namespace, label_selector=f"kubernetes.io/service-name={service}"
            ).items
        except Exception as error:  # the API being away, or no such Service, is "no answer" to a client
            if getattr(error, "status", None) != 404:
                log.warning("resolving %s: %s", host, error)
            return False, []
        any_address = bool(svc.spec.publish_not_ready_addresses)
        port_name = next((p.name for p in svc.spec.ports or [] if port is not None and p.port == port), None)
        out: list[tuple[str, int | None]] = []
        for endpoint_slice in slices:
            target = next(
                (p.port for p in endpoint_slice.ports or [] if port_name is None or p.name == port_name), port
            )
            out += [
                (str(endpoint.addresses[0]), target)
                for endpoint in endpoint_slice.endpoints or []
                if any_address or (endpoint.conditions and endpoint.conditions.ready)
            ]
        return True, out

    def resolve(self, host: str, port: int | None = None) -> tuple[str, int | None] | None:
        """(pod IP, target port) for `<svc>.<ns>.svc.cluster.local[:port]`, None when nothing backs it."""
        _, found = self._lookup(host, port)
        return found[0] if found else None

    def addresses(self, host: str) -> list[str] | None:
        """The pod addresses a DNS query for `host` answers with; None when `host` names no Service."""
        service, found = self._lookup(host, None)
        return sorted({ip for ip, _ in found}) if service else None


async def _forward(resolver: Resolver, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        writer.close()
        return
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, target, version = request_line.split(" ", 2)
    url = urlsplit(target)
    resolved = await asyncio.to_thread(resolver.resolve, url.hostname or "", url.port or 80)
    if url.scheme != "http" or resolved is None:
        writer.write(f"{version} 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        writer.close()
        return
    ip, port = resolved
    headers = [h for h in header_lines if h and not h.lower().startswith(("proxy-", "connection:"))]
    path = url.path or "/"
    if url.query:
        path += "?" + url.query
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection(ip, port or url.port or 80)
    except OSError:
        writer.write(f"{version} 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        writer.close()
        return
    upstream_writer.write(f"{method} {path} {version}\r\n".encode("latin-1"))
    upstream_writer.write(("\r\n".join([*headers, "Connection: close"]) + "\r\n\r\n").encode("latin-1"))

    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await source.read(65536):
                sink.write(chunk)
                await sink.drain()
        with contextlib.suppress(ConnectionError, OSError):
            sink.write_eof() if sink.can_write_eof() else None

    # The request body (if any) flows up while the answer flows back; the answer ends the exchange.
    upload = asyncio.create_task(pipe(reader, upstream_writer))
    await pipe(upstream_reader, writer)
    upload.cancel()
    for stream in (writer, upstream_writer):
        with contextlib.suppress(ConnectionError, OSError):
            stream.close()


async def serve_proxy(resolver: Resolver, port: int) -> asyncio.Server:
    """An HTTP forward proxy for cluster Service names on 127.0.0.1:`port` (one request per connection)."""
    return await asyncio.start_server(
        lambda r, w: _forward(resolver, r, w), "127.0.0.1", port, limit=MAX_HEAD_BYTES
    )


class _DnsProtocol(asyncio.DatagramProtocol):
    """Answers A queries for Service names (authoritative for cluster.local); anything else is NXDOMAIN:
    the test world has no other network to forward to."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        task = asyncio.get_running_loop().create_task(self._answer(data, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, data: bytes, addr: tuple[str, int]) -> None:
        import dns.exception
        import dns.flags
        import dns.message
        import dns.rcode
        import dns.rdatatype
        import dns.rrset

        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if query.question:
            question = query.question[0]
            found = await asyncio.to_thread(self.resolver.addresses, question.name.to_text())
            if found is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif question.rdtype == dns.rdatatype.A and found:
                response.answer.append(dns.rrset.from_text_list(question.name, 5, "IN", "A", found))
        if self.transport is not None:
            self.transport.sendto(response.to_wire(), addr)


async def serve_dns(resolver: Resolver, host: str, port: int = 53) -> asyncio.DatagramTransport:
    """The cluster's DNS server on `host`:`port` (UDP)."""
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: _DnsProtocol(resolver), local_addr=(host, port)
    )
    return transport


def resolv_conf(namespace: str, nameserver: str) -> str:
    """A pod's /etc/resolv.conf under `dnsPolicy: ClusterFirst`, as a kubelet writes it."""
    search = f"{namespace}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}"
    return f"search {search}\nnameserver {nameserver}\noptions ndots:5\n"
