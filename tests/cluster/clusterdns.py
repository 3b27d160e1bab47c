"""Cluster DNS for the test cluster: `<service>.<namespace>.svc.cluster.local` resolved from the Service's
EndpointSlices, as CoreDNS would, and an HTTP proxy that uses it.

There is no DNS server here. The KubeRay operator reaches a head's dashboard at the name it builds for
the head Service (`FetchHeadServiceURL`), with Go's plain HTTP client, which honours `HTTP_PROXY` for such
names (and never proxies loopback): so KubeRay runs with HTTP_PROXY pointing at `serve_proxy`, which
resolves the name and forwards the request. The pod runner uses the same resolver for the names in a
worker pod's command (the head address it joins). Chosen over the API server's service proxy, which
KubeRay also supports (`--use-kubernetes-proxy`), because then KubeRay would not do what it does in a
cluster: build the DNS name and connect to it.
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

    def resolve(self, host: str, port: int | None = None) -> tuple[str, int | None] | None:
        """(pod IP, target port) for `<svc>.<ns>.svc.cluster.local[:port]`, None when nothing backs it.
        Headless Services (KubeRay's head Service) publish not-ready addresses too, as their DNS does."""
        found = SERVICE_NAME.fullmatch(host)
        if found is None:
            return None
        service, namespace = found.group(1), found.group(3)
        try:
            svc = self.core.read_namespaced_service(service, namespace)
            slices = self.discovery.list_namespaced_endpoint_slice(
                namespace, label_selector=f"kubernetes.io/service-name={service}"
            ).items
        except Exception as error:  # the API being away is "no answer" to a DNS client
            log.warning("resolving %s: %s", host, error)
            return None
        any_address = bool(svc.spec.publish_not_ready_addresses)
        port_name = next((p.name for p in svc.spec.ports or [] if port is not None and p.port == port), None)
        for endpoint_slice in slices:
            target = next(
                (p.port for p in endpoint_slice.ports or [] if port_name is None or p.name == port_name), port
            )
            for endpoint in endpoint_slice.endpoints or []:
                if any_address or (endpoint.conditions and endpoint.conditions.ready):
                    return str(endpoint.addresses[0]), target
        return None

    def rewrite(self, text: str) -> str:
        """`text` with every resolvable Service name replaced by its address (for a pod's command)."""

        def replace(match: re.Match[str]) -> str:
            resolved = self.resolve(match.group(0))
            return resolved[0] if resolved else match.group(0)

        return SERVICE_NAME.sub(replace, text)


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
