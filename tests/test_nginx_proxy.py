"""deploy/nginx/passport.conf: every location forwards Host, X-Forwarded-For and X-Forwarded-Proto.

nginx inherits proxy_set_header from the server level only into a location that sets none of its
own. `location /ws/` sets Upgrade and Connection, so without repeating the three there the web
process saw `Host: passport_web` and the client's own X-Forwarded-For, and the browser terminal's
handshake was refused (passport_portal/websocket_origin.py).

The first test reads the file and always runs. The others run the shipped file in a real nginx:
PASSPORT_TEST_NGINX names the binary, else `nginx` on PATH, /usr/sbin/nginx, or the one that
`scripts/setup --test` unpacks into .venv/nginx; without any of them they skip.
"""

from __future__ import annotations

import datetime
import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CONF = Path(__file__).resolve().parent.parent / "deploy" / "nginx" / "passport.conf"
FORWARDED = ("Host", "X-Forwarded-For", "X-Forwarded-Proto")


def _blocks(text: str) -> list[tuple[str, str]]:
    """Each `location ... { ... }` of the file: its heading and its body (no nested blocks here)."""
    text = re.sub(r"#[^\n]*", "", text)
    return [(m.group(1).strip(), m.group(2)) for m in re.finditer(r"(location\b[^{]*)\{([^{}]*)\}", text)]


def _headers_set(body: str) -> set[str]:
    return {name.lower() for name in re.findall(r"^\s*proxy_set_header\s+(\S+)", body, re.MULTILINE)}


def test_every_location_that_sets_its_own_headers_repeats_the_forwarded_ones() -> None:
    locations = _blocks(CONF.read_text())
    assert any(heading == "location /ws/" for heading, _ in locations), locations
    for heading, body in locations:
        own = _headers_set(body)
        if own:
            missing = [name for name in FORWARDED if name.lower() not in own]
            assert not missing, f"{heading} sets proxy_set_header itself, so nginx drops {missing} there"


def test_the_listen_form_is_one_nginx_1_22_reads() -> None:
    # `http2 on;` needs nginx >= 1.25.1; Debian 12 ships 1.22.
    conf = re.sub(r"#[^\n]*", "", CONF.read_text())
    assert not re.search(r"^\s*http2\s+on\s*;", conf, re.MULTILINE)
    assert re.search(r"^\s*listen 443 ssl http2;", conf, re.MULTILINE)


def _nginx() -> str | None:
    named = os.environ.get("PASSPORT_TEST_NGINX")
    if named:
        return named
    found = shutil.which("nginx")
    if found:
        return found
    # scripts/setup --test unpacks Debian's nginx there when the machine has none.
    unpacked = Path(__file__).resolve().parent.parent / ".venv" / "nginx" / "usr" / "sbin" / "nginx"
    for candidate in ("/usr/sbin/nginx", str(unpacked)):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


SEEN: dict[str, dict[str, str]] = {}


class _Echo(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        SEEN[self.path] = {k.lower(): v for k, v in self.headers.items()}
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _certificate(directory: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "passport.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (directory / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "k.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The shipped file in a real nginx (ports, certificate and upstream pointed here), before an echo server."""
    binary = _nginx()
    if binary is None:
        pytest.skip("no nginx binary (set PASSPORT_TEST_NGINX, or install nginx) to run deploy/nginx/passport.conf")
    directory = tmp_path_factory.mktemp("nginx")
    _certificate(directory)
    backend = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    tls, plain = _free_port(), _free_port()
    text = CONF.read_text()
    text = re.sub(r"server 10\.0\.1\.\d+:\d+[^;]*;", f"server 127.0.0.1:{backend.server_port};", text)
    text = re.sub(r"listen \[::\]:\d+[^;]*;", "", text)
    text = re.sub(r"listen 443 ", f"listen 127.0.0.1:{tls} ", text)
    text = text.replace("listen 80;", f"listen 127.0.0.1:{plain};")
    text = text.replace("/etc/ssl/passport/fullchain.pem", str(directory / "c.pem"))
    text = text.replace("/etc/ssl/passport/privkey.pem", str(directory / "k.pem"))
    text = text.replace("allow 10.0.0.0/8;", "allow 127.0.0.1;")
    assert f"127.0.0.1:{tls}" in text and f"127.0.0.1:{backend.server_port}" in text
    (directory / "passport.conf").write_text(text)
    temps = " ".join(f"{t}_temp_path {directory}/{t};" for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (directory / "nginx.conf").write_text(
        f"pid {directory}/nginx.pid; error_log {directory}/error.log; events {{}}\n"
        f"http {{ access_log off; {temps} include {directory}/passport.conf; }}\n"
    )
    command = [binary, "-p", str(directory), "-e", str(directory / "error.log"), "-c", str(directory / "nginx.conf")]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30, check=False)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen([*command, "-g", "daemon off;"])
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", tls), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield tls
    finally:
        process.terminate()
        process.wait(10)
        backend.shutdown()


def _through_nginx(port: int, path: str, headers: dict[str, str]) -> dict[str, str]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
    connection.putrequest("GET", path, skip_host=True)
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.endheaders()
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.status == 200, response.status
    return SEEN[path]


BROWSER = {"Host": "passport.example.com", "Origin": "https://passport.example.com"}
# What a client may write itself: it stays to the left of what nginx appends.
HOSTILE = {**BROWSER, "X-Forwarded-For": "203.0.113.66", "X-Forwarded-Proto": "http"}
UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade"}


@pytest.mark.parametrize("path", ["/requests/", "/ws/terminal/1/", "/metrics", "/readyz"])
def test_each_location_forwards_the_host_the_real_client_and_the_scheme(proxy: int, path: str) -> None:
    seen = _through_nginx(proxy, path, {**HOSTILE, **UPGRADE} if path.startswith("/ws/") else HOSTILE)
    assert seen["host"] == "passport.example.com", seen
    assert seen["x-forwarded-for"].split(",")[-1].strip() == "127.0.0.1", seen
    assert seen["x-forwarded-proto"] == "https", seen


def test_the_browser_terminals_handshake_passes_the_origin_check_behind_this_nginx(proxy: int, settings: Any) -> None:
    from passport_portal.websocket_origin import origin_allowed

    # As deploy/passport.env.example sets them.
    settings.ALLOWED_HOSTS = ["passport.example.com"]
    settings.CSRF_TRUSTED_ORIGINS = []
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.DEBUG = False
    seen = _through_nginx(proxy, "/ws/terminal/2/", {**BROWSER, **UPGRADE})
    scope = {
        "type": "websocket",
        "scheme": "ws",
        "client": ("127.0.0.1", 5555),
        "headers": [(k.encode(), v.encode()) for k, v in seen.items()],
    }
    assert origin_allowed(scope), seen
