"""The shipped nginx site config (deploy/nginx/), rendered and run on loopback for tests and the bench.

The template is rendered exactly as the official nginx image renders it (only the
``PENDRA_NGINX_*`` names are substituted) and included in a minimal main config whose
paths all live in a throwaway prefix, so ``nginx -t`` and a running nginx need no root
and touch nothing outside it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from string import Template

from testing.servers import free_port

SITE_TEMPLATE = Path(__file__).resolve().parent.parent / "deploy" / "nginx" / "default.conf.template"


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


def render_site(*, listen: str, upstreams: list[str]) -> str:
    """The site config with its two names filled in; nginx's own ``$variables`` are left alone."""
    servers = " ".join(f"server {address};" for address in upstreams)
    return Template(SITE_TEMPLATE.read_text()).safe_substitute(
        PENDRA_NGINX_LISTEN=listen, PENDRA_NGINX_UPSTREAMS=servers
    )


def write_config(prefix: Path, site: str) -> Path:
    """A main nginx.conf around ``site`` with every path inside ``prefix``; returns its path."""
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    (prefix / "temp").mkdir(exist_ok=True)
    (prefix / "site.conf").write_text(site)
    temp = prefix / "temp"
    # As root, nginx's workers would otherwise switch to "nobody" and lose access to the prefix.
    user = "user root;\n" if os.geteuid() == 0 else ""
    main = (
        f"{user}daemon off;\nworker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/logs/error.log warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        f"  client_body_temp_path {temp}/body;\n  proxy_temp_path {temp}/proxy;\n"
        f"  fastcgi_temp_path {temp}/fastcgi;\n  uwsgi_temp_path {temp}/uwsgi;\n  scgi_temp_path {temp}/scgi;\n"
        f"  include {prefix}/site.conf;\n"
        "}\n"
    )
    config = prefix / "nginx.conf"
    config.write_text(main)
    return config


def nginx_test(site: str) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` on ``site`` as the deployment would include it."""
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed")
    with tempfile.TemporaryDirectory(prefix="pendra-nginx-t-") as prefix:
        config = write_config(Path(prefix), site)
        return subprocess.run(
            [binary, "-t", "-p", prefix, "-c", str(config), "-e", f"{prefix}/logs/error.log"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )


class Nginx:
    """nginx with the shipped site config in front of ``upstreams`` (host:port), on a free loopback port."""

    def __init__(self, upstreams: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.prefix = Path(tempfile.mkdtemp(prefix="pendra-nginx-"))
        self.access_log = self.prefix / "logs" / "access.log"
        site = render_site(listen=f"127.0.0.1:{self.port}", upstreams=upstreams)
        self.config = write_config(self.prefix, site.replace("/dev/stdout", str(self.access_log)))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Nginx:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed")
        self.process = subprocess.Popen(
            [binary, "-p", str(self.prefix), "-c", str(self.config), "-e", f"{self.prefix}/logs/error.log"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError((self.prefix / "logs" / "error.log").read_text()[-2000:])
            try:
                urllib.request.urlopen(f"{self.url}/healthz", timeout=1).close()  # noqa: S310 (loopback)
                return self
            except urllib.error.HTTPError:
                return self  # nginx answers (an upstream's error is still an answer)
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not start on {self.url}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.prefix, ignore_errors=True)

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
