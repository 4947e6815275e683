"""Glance and Neutron stand-ins for the freezer-dr lab: just enough for Nova to boot and evacuate servers
with "networks": "none" from an image that always exists.

    python standins.py GLANCE_PORT NEUTRON_PORT
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

IMAGE_TEMPLATE = {
    "name": "freezer-dr-lab",
    "status": "active",
    "visibility": "public",
    "container_format": "bare",
    "disk_format": "raw",
    "size": 1024,
    "virtual_size": 1024,
    "min_disk": 0,
    "min_ram": 0,
    "protected": False,
    "os_hidden": False,
    "checksum": "d41d8cd98f00b204e9800998ecf8427e",
    "owner": "freezer-dr-lab",
    "created_at": "2024-01-01T00:00:00Z",
    "updated_at": "2024-01-01T00:00:00Z",
    "tags": [],
    "file": "/v2/images/x/file",
    "schema": "/v2/schemas/image",
}

SCHEMA = {
    "name": "image",
    "properties": {
        k: {"type": ["null", "string", "integer", "boolean", "array", "object"]}
        for k in list(IMAGE_TEMPLATE) + ["id", "self"]
    },
    "additionalProperties": {"type": "string"},
    "links": [],
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    kind = "?"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.kind, fmt % args))

    def reply(self, code, body=None):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""


class Glance(Handler):
    kind = "glance"

    def do_GET(self):
        path = self.path.split("?")[0].rstrip("/")
        host = self.headers.get("Host", "127.0.0.1")
        if path in ("", "/versions"):
            return self.reply(200, {"versions": [{
                "id": "v2.16", "status": "CURRENT",
                "links": [{"rel": "self", "href": "http://%s/v2/" % host}]}]})
        if path == "/v2/schemas/image":
            return self.reply(200, SCHEMA)
        if path.startswith("/v2/images/"):
            image_id = path.split("/")[3]
            return self.reply(200, dict(IMAGE_TEMPLATE, id=image_id, self=path))
        if path == "/v2/images":
            return self.reply(200, {"images": []})
        return self.reply(404, {"message": "not found"})


class Neutron(Handler):
    kind = "neutron"

    def do_GET(self):
        path = self.path.split("?")[0].rstrip("/")
        host = self.headers.get("Host", "127.0.0.1")
        if path == "":
            return self.reply(200, {"versions": [{
                "id": "v2.0", "status": "CURRENT",
                "links": [{"rel": "self", "href": "http://%s/v2.0/" % host}]}]})
        name = path.rsplit("/", 1)[-1].replace(".json", "").replace("-", "_")
        return self.reply(200, {name: []})

    def do_POST(self):
        self.body()
        return self.reply(201, {})

    def do_PUT(self):
        self.body()
        return self.reply(200, {})

    def do_DELETE(self):
        return self.reply(204)


def main():
    glance = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Glance)
    neutron = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Neutron)
    threading.Thread(target=glance.serve_forever, daemon=True).start()
    neutron.serve_forever()


if __name__ == "__main__":
    main()
