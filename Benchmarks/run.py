"""The benchmark driver: starts the two workers and one nginx, runs wrk in interleaved rounds,
prints medians and Swift/C ratios. Called by Benchmarks/run."""
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROUNDS = int(os.environ.get("ROUNDS", "3"))
DURATION = int(os.environ.get("DURATION", "5"))
THREADS = int(os.environ.get("THREADS", "64"))
KEEPALIVE = 32  # nginx idle upstream connections; THREADS must stay above it

NGINX_CONF = """
{user}
worker_processes 1;
daemon off;
pid run/nginx.pid;
error_log logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path tmp/body; fastcgi_temp_path tmp/fastcgi; proxy_temp_path tmp/proxy;
    uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;
    upstream c_keep {{ server unix:{dir}/c.sock; keepalive {keepalive}; }}
    upstream swift_keep {{ server unix:{dir}/swift.sock; keepalive {keepalive}; }}
    server {{
        listen 127.0.0.1:{port};
        location /return {{ return 200 "hello"; }}
        location /c-keep/ {{ fastcgi_pass c_keep; fastcgi_keep_conn on; include {params}; }}
        location /swift-keep/ {{ fastcgi_pass swift_keep; fastcgi_keep_conn on; include {params}; }}
        location /c-close/ {{ fastcgi_pass unix:{dir}/c.sock; include {params}; }}
        location /swift-close/ {{ fastcgi_pass unix:{dir}/swift.sock; include {params}; }}
    }}
}}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, what):
    deadline = time.time() + 30
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def to_ms(text):
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(port, path, connections):
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{DURATION}s", "--latency", f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if errors:
        print(f"  warning: {path} -c{connections}: {errors.group(0)}", file=sys.stderr)
    return rps, p50, p99


def main():
    swift_binary, c_binary = sys.argv[1], sys.argv[2]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    work = tempfile.mkdtemp(prefix="sessionhost-bench-")
    for sub in ("logs", "run", "tmp"):
        os.makedirs(os.path.join(work, sub))
    port = free_port()
    with open(os.path.join(work, "nginx.conf"), "w") as conf:
        conf.write(NGINX_CONF.format(user="user root;" if os.geteuid() == 0 else "", dir=work, port=port,
                                     keepalive=KEEPALIVE, params=os.path.join(repo, "nginx/sessionhost_params")))
    processes = []
    try:
        c_worker = subprocess.Popen([c_binary, f"{work}/c.sock", str(THREADS)])
        swift_worker = subprocess.Popen([swift_binary, "serve", "--listen", f"unix:{work}/swift.sock",
                                         "--threads", str(THREADS), "--log-level", "warning"])
        processes += [c_worker, swift_worker]
        wait_for(lambda: os.path.exists(f"{work}/c.sock") and os.path.exists(f"{work}/swift.sock"), "the workers")
        nginx = subprocess.Popen(["nginx", "-p", work, "-c", f"{work}/nginx.conf", "-e", f"{work}/logs/error.log"])
        processes.append(nginx)
        wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, "nginx")

        idle = {"C": rss_kib(c_worker.pid), "Swift": rss_kib(swift_worker.pid)}
        targets = [("nginx return 200", "/return"), ("C libfcgi", "/c-keep/"), ("Swift host", "/swift-keep/"),
                   ("C libfcgi", "/c-close/"), ("Swift host", "/swift-close/")]
        for _, path in targets:  # warm-up
            subprocess.run(["wrk", "-t1", "-c32", "-d1s", f"http://127.0.0.1:{port}{path}"], capture_output=True, check=True)
        results = {}
        for round_number in range(1, ROUNDS + 1):
            print(f"round {round_number}/{ROUNDS}", file=sys.stderr)
            for connections in (1, 32):
                for _, path in targets:
                    results.setdefault((path, connections), []).append(wrk(port, path, connections))
        loaded = {"C": rss_kib(c_worker.pid), "Swift": rss_kib(swift_worker.pid)}
    finally:
        for process in reversed(processes):
            process.send_signal(signal.SIGTERM)
            process.wait()
        shutil.rmtree(work, ignore_errors=True)

    def median(path, connections, field):
        return statistics.median(r[field] for r in results[(path, connections)])

    print(f"\n{ROUNDS} interleaved rounds of {DURATION} s per cell, medians; wrk -t1; nginx 1 worker; "
          f"{THREADS} worker threads; upstream keepalive {KEEPALIVE}\n")
    print(f"| target | upstream | conns | req/s | p50 ms | p99 ms |")
    print(f"|---|---|---:|---:|---:|---:|")
    for connections in (1, 32):
        for name, path in targets:
            upstream = "-" if path == "/return" else ("keepalive" if "keep" in path else "close")
            print(f"| {name} | {upstream} | {connections} | {median(path, connections, 0):,.0f} | "
                  f"{median(path, connections, 1):.3f} | {median(path, connections, 2):.3f} |")
    print(f"\n| Swift/C | conns | req/s ratio | p99 ratio |")
    print(f"|---|---:|---:|---:|")
    for upstream in ("keep", "close"):
        for connections in (1, 32):
            c_path, swift_path = f"/c-{upstream}/", f"/swift-{upstream}/"
            rps = median(swift_path, connections, 0) / median(c_path, connections, 0)
            p99 = median(swift_path, connections, 2) / median(c_path, connections, 2)
            print(f"| {'keepalive' if upstream == 'keep' else 'close'} | {connections} | {rps:.3f} | {p99:.3f} |")
    print(f"\nworker RSS (KiB): idle C {idle['C']:,} / Swift {idle['Swift']:,}; "
          f"after load C {loaded['C']:,} / Swift {loaded['Swift']:,}")


if __name__ == "__main__":
    main()
