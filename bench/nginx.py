"""nginx configurations: the fixed-response upstream and the baseline keep-alive proxy.

Both run in the foreground (``daemon off``) with one worker, no access log, and every path
(pid, error log, temporary files) inside the benchmark's own directory, so nothing of the
system's nginx is read or written. Keep-alive request limits are lifted on every hop so that
no row pays for reconnections the others do not.
"""

from __future__ import annotations

from pathlib import Path

from procs import LOOPBACK

#: The upstream's answer to every request (~100 bytes of JSON).
UPSTREAM_BODY = (
    '{"id":42,"name":"benchmark item","status":"active",'
    '"tags":["alpha","beta"],"price":1999,"currency":"EUR"}'
)

_COMMON = """\
worker_processes 1;
daemon off;
pid {dir}/{name}.pid;
error_log {dir}/{name}.error.log warn;
events {{
    worker_connections 4096;
    multi_accept on;
}}
"""

_TEMP_PATHS = """\
    client_body_temp_path {dir}/{name}-temp/client;
    proxy_temp_path {dir}/{name}-temp/proxy;
    fastcgi_temp_path {dir}/{name}-temp/fastcgi;
    uwsgi_temp_path {dir}/{name}-temp/uwsgi;
    scgi_temp_path {dir}/{name}-temp/scgi;
"""

_UPSTREAM = """\
http {{
    access_log off;
{temp}
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    server {{
        listen {host}:{port} backlog=4096;
        default_type application/json;
        location / {{
            return 200 '{body}';
        }}
    }}
}}
"""

_PROXY = """\
http {{
    access_log off;
{temp}
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    upstream backend {{
        server {host}:{upstream_port};
        keepalive 64;
        keepalive_requests 10000000;
    }}
    server {{
        listen {host}:{port} backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def _write(workdir: Path, name: str, http: str, **values: object) -> Path:
    (workdir / f"{name}-temp").mkdir(exist_ok=True)
    temp = _TEMP_PATHS.format(dir=workdir, name=name)
    text = _COMMON.format(dir=workdir, name=name) + http.format(temp=temp, host=LOOPBACK, **values)
    path = workdir / f"{name}.conf"
    path.write_text(text)
    return path


def upstream_config(workdir: Path, port: int) -> Path:
    """nginx answering every request with ``UPSTREAM_BODY``, keep-alive."""
    return _write(workdir, "upstream", _UPSTREAM, port=port, body=UPSTREAM_BODY)


def proxy_config(workdir: Path, port: int, upstream_port: int) -> Path:
    """nginx as a plain keep-alive reverse proxy to the upstream: the baseline."""
    return _write(workdir, "nginx-proxy", _PROXY, port=port, upstream_port=upstream_port)


def nginx_command(nginx: str, config: Path, workdir: Path) -> list[str]:
    """Run ``config`` in the foreground; ``-e`` keeps even start-up errors out of /var/log."""
    return [nginx, "-e", str(workdir / "nginx-startup.log"), "-c", str(config)]
