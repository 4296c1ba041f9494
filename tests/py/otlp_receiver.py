"""A real OTLP/HTTP receiver for the telemetry tests.

Decodes OTLP protobuf exports (optionally gzip) with the official `opentelemetry-proto`
messages, exactly as a collector would, and keeps them in memory:

    python otlp_receiver.py --ready-file F     # writes the bound port to F once listening

    POST /v1/traces, /v1/metrics, /v1/logs   OTLP/HTTP protobuf (answers like a collector)
    GET  /spans                    every span received, flattened to JSON
    GET  /metrics                  every metric data point received, flattened to JSON
    GET  /logs                     every log record received, flattened to JSON
    GET  /raw                      the text form of every export request (for "no secret" checks)

Binds 127.0.0.1 on an ephemeral port; stops when its stdin closes or on SIGTERM.
"""

import argparse
import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

LOCK = threading.Lock()
SPANS = []
POINTS = []
LOGS = []
RAW = []


def value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind) if kind else None


def attrs(kvs):
    return {kv.key: value(kv.value) for kv in kvs}


def spans(req):
    out = []
    for rs in req.resource_spans:
        resource = attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append({
                    "service": resource.get("service.name"),
                    "resource": resource,
                    "scope": ss.scope.name,
                    "name": s.name,
                    "trace_id": s.trace_id.hex(),
                    "span_id": s.span_id.hex(),
                    "parent_span_id": s.parent_span_id.hex(),
                    "kind": s.kind,
                    "start": s.start_time_unix_nano,
                    "end": s.end_time_unix_nano,
                    "status": {"code": s.status.code, "message": s.status.message},
                    "attributes": attrs(s.attributes),
                    "events": [{"name": e.name, "attributes": attrs(e.attributes)} for e in s.events],
                    "links": [{"trace_id": l.trace_id.hex(), "span_id": l.span_id.hex()} for l in s.links],
                })
    return out


def points(req):
    out = []
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                data = getattr(m, kind)
                for p in data.data_points:
                    point = {"name": m.name, "kind": kind, "attributes": attrs(p.attributes)}
                    if kind == "histogram":
                        point["count"] = p.count
                        point["sum"] = p.sum
                    else:
                        point["value"] = p.as_int if p.WhichOneof("value") == "as_int" else p.as_double
                    out.append(point)
    return out


def logs(req):
    out = []
    for rl in req.resource_logs:
        resource = attrs(rl.resource.attributes)
        for sl in rl.scope_logs:
            for r in sl.log_records:
                out.append({
                    "service": resource.get("service.name"),
                    "scope": sl.scope.name,
                    "event_name": r.event_name,
                    "severity": r.severity_text,
                    "trace_id": r.trace_id.hex(),
                    "body": value(r.body),
                    "attributes": attrs(r.attributes),
                })
    return out


ROUTES = {
    "/v1/traces": (trace_service_pb2.ExportTraceServiceRequest,
                   trace_service_pb2.ExportTraceServiceResponse, SPANS, spans),
    "/v1/metrics": (metrics_service_pb2.ExportMetricsServiceRequest,
                    metrics_service_pb2.ExportMetricsServiceResponse, POINTS, points),
    "/v1/logs": (logs_service_pb2.ExportLogsServiceRequest,
                 logs_service_pb2.ExportLogsServiceResponse, LOGS, logs),
}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, code, body, ctype="application/json"):
        self.send_response(code)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        if not self.headers.get("content-type", "").startswith("application/x-protobuf"):
            return self.reply(415, b'{"error":"this receiver decodes application/x-protobuf only"}')
        route = ROUTES.get(self.path)
        if route is None:
            return self.reply(404, b"{}")
        request_type, response_type, store, flatten = route
        req = request_type.FromString(body)
        with LOCK:
            store.extend(flatten(req))
            RAW.append(str(req))
        answer = response_type()
        self.reply(200, answer.SerializeToString(), "application/x-protobuf")

    def do_GET(self):
        with LOCK:
            if self.path == "/spans":
                return self.reply(200, json.dumps(SPANS).encode())
            if self.path == "/metrics":
                return self.reply(200, json.dumps(POINTS).encode())
            if self.path == "/logs":
                return self.reply(200, json.dumps(LOGS).encode())
            if self.path == "/raw":
                return self.reply(200, "\n".join(RAW).encode(), "text/plain")
        self.reply(404, b"{}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ready-file", required=True)
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with open(args.ready_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os
    os.replace(args.ready_file + ".tmp", args.ready_file)
    sys.stdin.read()  # the test holds stdin open; EOF means stop
    server.shutdown()


if __name__ == "__main__":
    main()
