"""A tiny OTLP/HTTP trace receiver on 127.0.0.1, to print a trace without Jaeger.

What a real backend (Jaeger ≥ 1.35) receives is the same OTLP payload; this one keeps
the spans in memory and prints one trace as a tree, each span with its service.
"""

from __future__ import annotations

import gzip
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """Collects OTLP/HTTP trace exports (protobuf) posted to ``endpoint``."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        self.spans: list[dict[str, Any]] = []
        lock = threading.Lock()
        spans = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with lock:
                    for resource_spans in request.resource_spans:
                        service = next(
                            (
                                a.value.string_value
                                for a in resource_spans.resource.attributes
                                if a.key == "service.name"
                            ),
                            "?",
                        )
                        for scope in resource_spans.scope_spans:
                            for span in scope.spans:
                                spans.append(
                                    {
                                        "service": service,
                                        "name": span.name,
                                        "trace": span.trace_id.hex(),
                                        "id": span.span_id.hex(),
                                        "parent": span.parent_span_id.hex(),
                                        "start": span.start_time_unix_nano,
                                        "end": span.end_time_unix_nano,
                                    }
                                )
                payload = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @classmethod
    def start_if_possible(cls) -> Receiver | None:
        """A running receiver, or None if the OTLP packages are not installed."""
        try:
            import opentelemetry.exporter.otlp.proto.http
            import opentelemetry.proto  # noqa: F401
        except ImportError:
            return None
        return cls()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def print_first_trace(self, indent: str = "") -> None:
        """Print the trace of the earliest edge span as a tree: service, span, duration."""
        roots = sorted(
            (s for s in self.spans if s["service"] == "edge" and not s["parent"]),
            key=lambda s: s["start"],
        )
        if not roots:
            print(f"{indent}(no spans received)")
            return
        trace = [s for s in self.spans if s["trace"] == roots[0]["trace"]]
        children: dict[str, list[dict[str, Any]]] = {}
        for span in trace:
            children.setdefault(span["parent"], []).append(span)
        services = sorted({s["service"] for s in trace})
        print(f"{indent}trace {roots[0]['trace']}: {len(trace)} spans from {', '.join(services)}")

        def walk(span: dict[str, Any], depth: int) -> None:
            ms = (span["end"] - span["start"]) / 1e6
            label = f"{'  ' * depth}{span['name']}"
            print(f"{indent}{span['service']:<10} {label:<44} {ms:7.1f} ms")
            for child in sorted(children.get(span["id"], []), key=lambda s: s["start"]):
                walk(child, depth + 1)

        walk(roots[0], 0)
