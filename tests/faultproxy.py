"""An HTTP proxy on 127.0.0.1 that makes the AWS emulator behave like AWS in a storm.

Every request goes to the emulator, except that a share `fail` of them is
answered at once with a 503 or a throttling error (the call never took
effect), and a share `lose` of the answers is replaced by a 500 after the
call took effect (the client retries something that already happened).
`deny(method, path)`, when given, names requests refused with AccessDenied,
as AWS refuses a call a policy does not allow (the emulator enforces none).
`refuse(action)`, when given, does the same by a JSON-protocol action's name
(SQS's "DeleteMessage", say). `calls` lists (method, path, JSON-protocol action or "") of every request in
the order they came, for tests of the order a client calls AWS in.
Point AWS_ENDPOINT_URL at `proxy.url`. The emulator's own /moto-api/ is
never faulted. Used by tests/test_storm.py and benchmarks/bench_storm.py.
"""
import http.client
import http.server
import random
import threading
import urllib.parse

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer",
               "upgrade", "proxy-connection", "content-length"}


class FaultProxy(object):
    def __init__(self, target, fail=0.0, lose=0.0, seed=None, deny=None, refuse=None):
        parsed = urllib.parse.urlparse(target)
        self.target = (parsed.hostname, parsed.port)
        self.fail, self.lose = fail, lose
        self.deny = deny or (lambda method, path: False)
        self.refuse = refuse or (lambda action: False)
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.counts = {"calls": 0, "failed": 0, "lost": 0, "records": 0}
        self.calls = []
        proxy = self

        class Handler(_Handler):
            owner = proxy
        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def set(self, fail=None, lose=None):
        with self.lock:
            if fail is not None:
                self.fail = fail
            if lose is not None:
                self.lose = lose

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def _draw(self):
        """'fail', 'lose' or None for the next call."""
        with self.lock:
            self.counts["calls"] += 1
            x = self.rng.random()
            if x < self.fail:
                self.counts["failed"] += 1
                return "fail"
            if x < self.fail + self.lose:
                self.counts["lost"] += 1
                return "lose"
            return None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that hung up (a stopped worker) is not news


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner = None

    def log_message(self, *args):
        pass  # a storm's worth of request lines would drown the test output

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if not size:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self):
        body = self._body()
        action = self.headers.get("X-Amz-Target", "").split(".")[-1]
        with self.owner.lock:
            self.owner.calls.append((self.command, self.path, action))
        if self.path.startswith("/moto-api"):
            fault = None
        else:
            fault = self.owner._draw()
            if "/ds-records/" in self.path:  # the cost of the job records, for the benchmark
                with self.owner.lock:
                    self.owner.counts["records"] += 1
        if self.owner.deny(self.command, self.path) or (action and self.owner.refuse(action)):
            return self._reply(*self._error(body, 403, "AccessDenied", "Access Denied"))
        if fault == "fail":
            throttle = self.owner.rng.random() < 0.5
            return self._reply(*self._error(body, *(
                (400, "Throttling", "Rate exceeded") if throttle else
                (503, "ServiceUnavailable", "Service is unavailable, try again"))))
        try:
            status, headers, answer = self._forward(body)
        except OSError:
            return self._reply(502, {}, b"")
        if fault == "lose":
            return self._reply(*self._error(body, 500, "InternalError",
                                            "We encountered an internal error"))
        self._reply(status, headers, answer)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _handle

    def _forward(self, body):
        conn = http.client.HTTPConnection(*self.owner.target, timeout=120)
        try:
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in _HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def _error(self, body, status, code, message):
        """An error answer in the dialect of the called service, as AWS sends them."""
        auth = self.headers.get("Authorization", "")
        content_type = self.headers.get("Content-Type", "")
        if "/s3/aws4_request" in auth:
            code = "SlowDown" if code == "Throttling" else code
            status = 503 if code == "SlowDown" else status
            return status, {"Content-Type": "application/xml"}, (
                "<Error><Code>%s</Code><Message>%s</Message></Error>" % (code, message)
            ).encode()
        if self.headers.get("X-Amz-Target") and "json" in content_type:
            code = "ThrottlingException" if code == "Throttling" else code
            return status, {"Content-Type": content_type}, (
                '{"__type":"%s","message":"%s"}' % (code, message)).encode()
        if "/ec2/aws4_request" in auth:
            return status, {"Content-Type": "text/xml"}, (
                "<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error>"
                "</Errors><RequestID>fault-proxy</RequestID></Response>" % (code, message)
            ).encode()
        if body.startswith(b"Action=") or b"&Action=" in body:
            return status, {"Content-Type": "text/xml"}, (
                "<ErrorResponse><Error><Type>Receiver</Type><Code>%s</Code><Message>%s"
                "</Message></Error></ErrorResponse>" % (code, message)).encode()
        return status, {}, b""

    def _reply(self, status, headers, body):
        self.send_response(status)
        items = list(headers.items() if isinstance(headers, dict) else headers)
        for k, v in items:
            if k.lower() not in _HOP_BY_HOP and k.lower() not in ("date", "server"):
                self.send_header(k, v)
        length = str(len(body))
        if self.command == "HEAD":  # a HEAD answer states the size of what GET would send
            length = dict((k.lower(), v) for k, v in items).get("content-length", length)
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
