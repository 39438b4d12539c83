"""An OTLP/HTTP logs receiver for log-aggregator's tests (tests/ship_otlp.rs).

Decodes every POST /v1/logs with the official definitions (PyPI
`opentelemetry-proto`): protobuf bodies with ParseFromString, JSON bodies
(OTLP/HTTP JSON mapping) with google.protobuf.json_format.Parse into the
same message, gzip first when Content-Encoding says so. Answers 200, or on
a schedule 503 and 429 with Retry-After, and records what it accepted:
  OUT/port          the port it listens on (written once listening)
  OUT/bodies.txt    one line per accepted record: its body
  OUT/records.jsonl the first accepted request's records and resource, as JSON
  OUT/stats.json    requests per status and per encoding, rewritten after
                    each request
  OUT/requests.log  one line per request: its status and when it came
                    (seconds, monotonic)

usage: otlp_receiver.py OUT [EVERY_503 [EVERY_429 [EVERY_413]]]
environment: PORT (default: any free one); PARTIAL=N answers every 2xx with a
partial success rejecting N records; TLS_CERT and TLS_KEY (PEM files) serve
HTTPS, and with TLS_CLIENT_CA (PEM) require a client certificate it signed;
RETRY_STATUS (default 503) is the status of the EVERY_503 schedule,
RETRY_AFTER its Retry-After (default 1; "date:N" for an HTTP-date N seconds
ahead)
"""

import email.utils
import gzip
import json
import os
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.json_format import MessageToDict, MessageToJson, Parse
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsPartialSuccess,
    ExportLogsServiceResponse,
)

OUT = sys.argv[1]
EVERY_503 = int(sys.argv[2]) if len(sys.argv) > 2 else 0
EVERY_429 = int(sys.argv[3]) if len(sys.argv) > 3 else 0
EVERY_413 = int(sys.argv[4]) if len(sys.argv) > 4 else 0
LOCK = threading.Lock()
PARTIAL = int(os.environ.get("PARTIAL", "0"))
RETRY_STATUS = int(os.environ.get("RETRY_STATUS", "503"))
RETRY_AFTER = os.environ.get("RETRY_AFTER", "1")
STATS = {
    "requests": 0, "200": 0, "503": 0, "429": 0, "413": 0, "400": 0, "records": 0, "refused": 0,
    "protobuf": 0, "json": 0, "gzip": 0,
}
CONTENT_TYPES = {"application/x-protobuf": "protobuf", "application/json": "json"}
FIRST = [True]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body=b"", headers=(), content_type="application/x-protobuf"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        data = self.rfile.read(length)
        with LOCK:
            STATS["requests"] += 1
            n = STATS["requests"]
            encoding = CONTENT_TYPES.get(self.headers.get("Content-Type"))
            if self.path != "/v1/logs" or encoding is None:
                status = 400
            elif EVERY_503 and n % EVERY_503 == 0:
                status = RETRY_STATUS
            elif EVERY_429 and n % EVERY_429 == 0:
                status = 429
            elif EVERY_413 and n % EVERY_413 == 0:
                status = 413
            else:
                status = 200
            request = ExportLogsServiceRequest()
            try:
                if self.headers.get("Content-Encoding") == "gzip":
                    data = gzip.decompress(data)
                    STATS["gzip"] += 1
                if encoding == "json":
                    Parse(data.decode("utf-8"), request)
                else:
                    request.ParseFromString(data)
                STATS[encoding] += 1
            except Exception:  # noqa: BLE001 - any decoding error is a 400
                status = 400
            if status == 413:
                STATS["refused"] += sum(
                    len(scope_logs.log_records)
                    for resource_logs in request.resource_logs
                    for scope_logs in resource_logs.scope_logs
                )
            if status == 200:
                with open(os.path.join(OUT, "bodies.txt"), "a", encoding="utf-8") as bodies:
                    for resource_logs in request.resource_logs:
                        for scope_logs in resource_logs.scope_logs:
                            for record in scope_logs.log_records:
                                STATS["records"] += 1
                                bodies.write(record.body.string_value + "\n")
                if FIRST[0]:
                    FIRST[0] = False
                    with open(os.path.join(OUT, "records.jsonl"), "w", encoding="utf-8") as first:
                        first.write(json.dumps(MessageToDict(request)) + "\n")
            STATS[str(status)] = STATS.get(str(status), 0) + 1
            with open(os.path.join(OUT, "requests.log"), "a", encoding="utf-8") as log:
                log.write(f"{status} {time.monotonic():.3f}\n")
            with open(os.path.join(OUT, "stats.json.tmp"), "w", encoding="utf-8") as stats:
                json.dump(STATS, stats)
            os.replace(os.path.join(OUT, "stats.json.tmp"), os.path.join(OUT, "stats.json"))
        if status == 200:
            response = ExportLogsServiceResponse()
            if PARTIAL:
                response.partial_success.CopyFrom(
                    ExportLogsPartialSuccess(rejected_log_records=PARTIAL, error_message="test partial")
                )
            if encoding == "json":
                body = MessageToJson(response).encode("utf-8")
                self.answer(200, body, content_type="application/json")
            else:
                self.answer(200, response.SerializeToString())
        elif status == RETRY_STATUS:
            if RETRY_AFTER.startswith("date:"):
                at = time.time() + int(RETRY_AFTER[len("date:"):])
                retry_after = email.utils.formatdate(at, usegmt=True)
            else:
                retry_after = RETRY_AFTER
            self.answer(status, b"", [("Retry-After", retry_after)])
        elif status == 429:
            self.answer(status, b"", [("Retry-After", "0")])
        elif status == 413:
            self.answer(413, b"too large")
        else:
            self.answer(400, b"bad request")


server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "0"))), Handler)
if os.environ.get("TLS_CERT"):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.environ["TLS_CERT"], os.environ["TLS_KEY"])
    if os.environ.get("TLS_CLIENT_CA"):
        # Mutual TLS: a client certificate this CA signed, or no request.
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(os.environ["TLS_CLIENT_CA"])
    server.socket = context.wrap_socket(server.socket, server_side=True)
with open(os.path.join(OUT, "port.tmp"), "w", encoding="utf-8") as port:
    port.write(str(server.server_address[1]))
os.replace(os.path.join(OUT, "port.tmp"), os.path.join(OUT, "port"))
server.serve_forever()
