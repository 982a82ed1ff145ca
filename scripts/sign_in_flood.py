#!/usr/bin/env python3
"""Measures the pool under a flood of concurrent bad sign-ins, from outside the process.

Starts the given portcullis binary with a throw-away configuration (a pool on SQLite in a
temporary directory, default lockout), fetches the sign-in page once for a CSRF cookie and
token, opens N sockets, writes N `POST /oauth2/pool/login` requests with distinct unknown user
names back to back (one client address, `Connection: close`), reads every answer, and samples
the server's /proc/PID/status (VmRSS, Threads) every 10 ms throughout. Prints the answers by
status, the peak RSS and threads, and the RSS and threads 5 s later. Bounded in time: every
socket has a 60 s timeout and the server is stopped (by its PID) at the end.

    scripts/sign_in_flood.py --bin target/release/portcullis -n 100
    scripts/sign_in_flood.py --bin target/release/portcullis -n 1000 --ip-max-attempts 0
"""

import argparse
import html
import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def status(pid):
    try:
        text = open(f"/proc/{pid}/status").read()
    except OSError:
        return 0, 0
    rss = int(re.search(r"VmRSS:\s+(\d+)", text).group(1))
    threads = int(re.search(r"Threads:\s+(\d+)", text).group(1))
    return rss, threads


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("-n", type=int, default=100)
    ap.add_argument(
        "--ip-max-attempts",
        type=int,
        default=None,
        help="pool.lockout.ip_max_attempts (0: no per-address limit, so every request reaches the hashing limit)",
    )
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.n + 256)), hard))

    d = tempfile.mkdtemp(prefix="pc-flood-")
    port, admin = free_port(), free_port()
    cfg = os.path.join(d, "portcullis.toml")
    with open(cfg, "w") as f:
        f.write(
            f'public_url = "http://127.0.0.1:{port}"\n'
            f'[server]\nlisten = ["127.0.0.1:{port}"]\nadmin_listen = "127.0.0.1:{admin}"\n'
            '[session]\nsecrets = ["flood-secret-flood-secret-flood-secret"]\n'
            '[log]\nformat = "json"\nlevel = "warn"\n'
            f'[[routes]]\npath = "/"\nupstream = "http://127.0.0.1:9"\nprovider = "pool"\n'
            f'[pool]\ndatabase = "sqlite://{d}/pool.db"\n'
        )
        if args.ip_max_attempts is not None:
            f.write(f"lockout = {{ ip_max_attempts = {args.ip_max_attempts} }}\n")
    log = open(os.path.join(d, "server.log"), "w")
    server = subprocess.Popen([args.bin, "serve", "--config", cfg], stdout=log, stderr=log)
    try:
        deadline = time.time() + 30
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1).status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                sys.exit("server did not become ready")
            time.sleep(0.1)

        # The CSRF pair, fetched once.
        r = urllib.request.urlopen(f"http://127.0.0.1:{port}/oauth2/pool/login", timeout=10)
        page = r.read().decode()
        cookies = "; ".join(
            c.split(";", 1)[0] for c in r.headers.get_all("Set-Cookie") or []
        )
        token = html.unescape(re.search(r'name="csrf_token" value="([^"]+)"', page).group(1))
        action = re.search(r'<form[^>]*action="([^"]*login[^"]*)"', page).group(1)
        action = urllib.parse.urlsplit(html.unescape(action))
        target = action.path + ("?" + action.query if action.query else "")

        before = status(server.pid)
        peak = list(before)
        done = threading.Event()

        def sample():
            while not done.is_set():
                rss, thr = status(server.pid)
                peak[0], peak[1] = max(peak[0], rss), max(peak[1], thr)
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()
        socks = []
        for i in range(args.n):
            s = socket.create_connection(("127.0.0.1", port), timeout=60)
            socks.append(s)
        t0 = time.time()
        for i, s in enumerate(socks):
            body = urllib.parse.urlencode(
                {"csrf_token": token, "username": f"nobody-{i}", "password": "Wrong-Password-1"}
            )
            s.sendall(
                (
                    f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookies}\r\n"
                    "Content-Type: application/x-www-form-urlencoded\r\nConnection: close\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n{body}"
                ).encode()
            )
        answers = {}
        retry_after = 0
        for s in socks:
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
            head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
            code = head.split(" ", 2)[1] if head.startswith("HTTP/") else "none"
            answers[code] = answers.get(code, 0) + 1
            if re.search(r"(?im)^retry-after:", head):
                retry_after += 1
            s.close()
        elapsed = time.time() - t0
        done.set()
        sampler.join()
        time.sleep(5)
        after = status(server.pid)
        print(
            json.dumps(
                {
                    "concurrent": args.n,
                    "seconds": round(elapsed, 2),
                    "answers": answers,
                    "with_retry_after": retry_after,
                    "before": {"rss_mib": before[0] // 1024, "threads": before[1]},
                    "peak": {"rss_mib": peak[0] // 1024, "threads": peak[1]},
                    "after_5s": {"rss_mib": after[0] // 1024, "threads": after[1]},
                }
            )
        )
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
