"""The benchmark driver, called by Benchmarks/run. Starts the workers and one nginx, runs wrk in
interleaved rounds, checks the answers, and prints markdown tables ready to paste into
Benchmarks/README.md.

Parts (ONLY=hello,sessions,memory by default; any comma-separated subset):
  hello     nginx `return 200`, the C libfcgi worker and the Swift host (bench-hello) at -c1 and -c32,
            with and without upstream keepalive.
  sessions  the ASP.NET session counter (InProc) next to the hello handler of the same Swift worker,
            and php-fpm 8.2's files session handler doing the same, each rotating through 10 000
            pre-created sessions with a generated wrk Lua script.
  memory    a fresh Swift worker's RSS before and after 100 000 sessions of four short strings.
  apache    the C libfcgi worker and the Swift host behind Apache httpd 2.4 (mpm_event,
            mod_proxy_fcgi, enablereuse=on) at -c1 and -c16, in the same rounds.
  idle      the Swift host with 4 threads behind nginx with 32 kept upstream connections (more
            kept connections than threads) next to the same worker with 64 threads, at -c32.
  stateserver  the session counter of one Swift worker on InProc, on StateServer (a
            session-state-server on this machine) and on Custom mode with Redis (the same
            redis-server as php-fpm's, Microsoft's provider's type), next to php-fpm 8.2 with redis sessions
            (phpredis, locking on, a redis-server without persistence), 10 000 sessions rotated
            each; then the state server's RSS with 100 000 sessions.
  sql       the session counter of one Swift worker on InProc, on SQLServer with PostgreSQL 15 (a
            server the driver starts: fsync and synchronous_commit on, as installed) and on
            SQLServer with a SQLite file, next to php-fpm 8.2 with files sessions and with redis
            sessions, 10 000 sessions rotated each; PostgreSQL statements, transactions (pipelined
            batches: one round trip and one commit each) and WAL flushes per request.
"""
import http.client
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
PARTS = [part for part in os.environ.get("ONLY", "hello,sessions,memory,apache,idle,stateserver,sql").split(",") if part]
ALL_PARTS = {"hello", "sessions", "memory", "apache", "idle", "stateserver", "sql"}
SESSIONS = int(os.environ.get("SESSIONS", "10000"))  # rotated by the counter cells
SQL_CELLS = [cell for cell in os.environ.get("SQL_CELLS", "").split(",") if cell]  # a subset of the sql part's cells (profiling)
# The sql part's worker: requests wait on the database, so it lets as many threads take
# connections as wrk keeps requests in flight (the README's advice for such apps); with the default
# (one per core) each request hands its turn over to another thread when it blocks, which cost
# this machine about a quarter of the PostgreSQL counter's rate.
SQL_ACTIVE_THREADS = os.environ.get("SQL_ACTIVE_THREADS")  # the sql part's worker (default: the worker's own)
SS_ACTIVE_THREADS = os.environ.get("SS_ACTIVE_THREADS")  # the stateserver part's worker (default: the worker's own)
FILL = int(os.environ.get("FILL", "100000"))  # sessions created for the memory measurement
PHP_CHILDREN = int(os.environ.get("PHP_CHILDREN", "32"))  # pm = static; one per wrk connection
KEEPALIVE = 32  # nginx idle upstream connections (they hold no worker thread)
CONNECTIONS = 32  # the session cells
APACHE_CONNECTIONS = 16
IDLE_THREADS = 4
ASP_COOKIE = "ASP.NET_SessionId"
PHP_COOKIE = "PHPSESSID"

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
    upstream swift_mem {{ server unix:{dir}/swift-mem.sock; keepalive {keepalive}; }}
    upstream swift_few {{ server unix:{dir}/swift-few.sock; keepalive {keepalive}; }}
    upstream php_keep {{ server unix:{dir}/php.sock; keepalive {keepalive}; }}
    upstream swift_ss {{ server unix:{dir}/swift-ss.sock; keepalive {keepalive}; }}
    upstream php_redis {{ server unix:{dir}/php-redis.sock; keepalive {keepalive}; }}
    upstream php_redis_unix {{ server unix:{dir}/php-redis-unix.sock; keepalive {keepalive}; }}
    upstream swift_sql {{ server unix:{dir}/swift-sql.sock; keepalive {keepalive}; }}
    server {{
        listen 127.0.0.1:{port};
        location /return {{ return 200 "hello"; }}
        location /c-keep/ {{ fastcgi_pass c_keep; fastcgi_keep_conn on; include {params}; }}
        location /swift-keep/ {{ fastcgi_pass swift_keep; fastcgi_keep_conn on; include {params}; }}
        location /c-close/ {{ fastcgi_pass unix:{dir}/c.sock; include {params}; }}
        location /swift-close/ {{ fastcgi_pass unix:{dir}/swift.sock; include {params}; }}
        location /swift-mem/ {{ fastcgi_pass swift_mem; fastcgi_keep_conn on; include {params}; }}
        location /swift-few/ {{ fastcgi_pass swift_few; fastcgi_keep_conn on; include {params}; }}
        location /php/ {{
            root {dir}/www;
            fastcgi_pass php_keep; fastcgi_keep_conn on; include {params};
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
        }}
        location /swift-ss/ {{ fastcgi_pass swift_ss; fastcgi_keep_conn on; include {params}; }}
        location /swift-sql/ {{ fastcgi_pass swift_sql; fastcgi_keep_conn on; include {params}; }}
        location /php-redis/ {{
            root {dir}/www;
            fastcgi_pass php_redis; fastcgi_keep_conn on; include {params};
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
        }}
        location /php-redis-unix/ {{
            root {dir}/www;
            fastcgi_pass php_redis_unix; fastcgi_keep_conn on; include {params};
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
        }}
    }}
}}
"""

# Apache httpd with its own ServerRoot, in front of the same two workers: mpm_event (Debian's
# default), mod_proxy_fcgi reusing backend connections as the shipped example does.
APACHE_CONF = """
ServerRoot "{dir}"
DefaultRuntimeDir "{dir}/run"
PidFile "{dir}/run/httpd.pid"
ErrorLog "{dir}/logs/apache-error.log"
LogLevel warn
Listen 127.0.0.1:{port}
ServerName localhost
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule proxy_module /usr/lib/apache2/modules/mod_proxy.so
LoadModule proxy_fcgi_module /usr/lib/apache2/modules/mod_proxy_fcgi.so
{user}
MaxKeepAliveRequests 0
ProxyFCGIBackendType GENERIC
ProxyPass "/c/" "unix:{dir}/c-apache.sock|fcgi://c-hello/" enablereuse=on
ProxyPass "/swift/" "unix:{dir}/swift.sock|fcgi://swift/" enablereuse=on
"""

# php-fpm 8.2 with its own prefix. pm = static with one child per wrk connection: php-fpm serves
# one request per child at a time, so 32 children are the most the 32 connections can use (more
# would only add idle processes; fewer would queue requests in the socket backlog).
PHP_FPM_CONF = """
[global]
pid = {dir}/run/php-fpm.pid
error_log = {dir}/logs/php-fpm.log
daemonize = no

[bench]
listen = {dir}/php.sock
listen.mode = 0660
listen.backlog = 511
pm = static
pm.max_children = {children}
pm.max_requests = 0
catch_workers_output = yes
; opcache: Debian loads it (conf.d/10-opcache.ini) and opcache.enable defaults to 1; the driver reports its state.
php_admin_value[session.save_handler] = files
php_admin_value[session.save_path] = {dir}/php-sessions
php_admin_value[session.gc_probability] = 0
php_admin_flag[log_errors] = on
php_admin_value[error_log] = {dir}/logs/php-errors.log
"""

# The redis pools: phpredis' session handler with its locking on (off by default, which would let
# concurrent requests of one session overwrite each other); the stateserver part's over TCP (as the
# state server is reached), the sql part's over redis' Unix socket (as PostgreSQL is reached).
PHP_FPM_REDIS_POOL = """
[{pool}]
listen = {dir}/{pool}.sock
listen.mode = 0660
listen.backlog = 511
pm = static
pm.max_children = {children}
pm.max_requests = 0
catch_workers_output = yes
php_admin_value[session.save_handler] = redis
php_admin_value[session.save_path] = "{save_path}"
php_admin_value[session.gc_probability] = 0
php_admin_value[redis.session.locking_enabled] = 1
php_admin_value[redis.session.lock_wait_time] = 2000
php_admin_value[redis.session.lock_retries] = 5000
php_admin_flag[log_errors] = on
php_admin_value[error_log] = {dir}/logs/php-errors.log
"""

# The stateserver part's worker configuration: the root application InProc (the default), the
# application /swift-ss/ss on the state server.
SS_APPLICATION_HOST = """<configuration>
  <system.applicationHost><sites>
    <site name="Bench" id="1">
      <application path="/"><virtualDirectory path="/" physicalPath="../ss-www" /></application>
      <application path="/swift-ss/ss"><virtualDirectory path="/" physicalPath="../ss-app" /></application>
      <application path="/swift-ss/redis"><virtualDirectory path="/" physicalPath="../ss-redis" /></application>
    </site>
  </sites></system.applicationHost>
</configuration>
"""
SS_WEB_CONFIG = """<configuration><system.web>
  <sessionState mode="StateServer" stateConnectionString="tcpip=127.0.0.1:{state_port}" />
</system.web></configuration>
"""
# /swift-ss/redis: Custom mode on the same redis-server as php-fpm's, by Microsoft's type name.
SS_REDIS_WEB_CONFIG = """<configuration><system.web>
  <sessionState mode="Custom" customProvider="Redis">
    <providers><add name="Redis" type="Microsoft.Web.Redis.RedisSessionStateProvider" host="127.0.0.1" port="{redis_port}" ssl="false" /></providers>
  </sessionState>
</system.web></configuration>
"""

# The sql part's worker configuration: the root application InProc, /swift-sql/pg on PostgreSQL,
# /swift-sql/lite on a SQLite file.
SQL_APPLICATION_HOST = """<configuration>
  <system.applicationHost><sites>
    <site name="Bench" id="1">
      <application path="/"><virtualDirectory path="/" physicalPath="../sql-www" /></application>
      <application path="/swift-sql/pg"><virtualDirectory path="/" physicalPath="../sql-pg" /></application>
      <application path="/swift-sql/pgtcp"><virtualDirectory path="/" physicalPath="../sql-pgtcp" /></application>
      <application path="/swift-sql/lite"><virtualDirectory path="/" physicalPath="../sql-lite" /></application>
    </site>
  </sites></system.applicationHost>
</configuration>
"""
SQL_WEB_CONFIG = """<configuration><system.web>
  <sessionState mode="SQLServer" sqlConnectionString="{connection}" />
</system.web></configuration>
"""
PG_BIN = "/usr/lib/postgresql/15/bin"

PHP_COUNTER = """<?php
session_start();
$_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
echo $_SESSION['n'];
"""

PHP_OPCACHE = """<?php
echo (function_exists('opcache_get_status') && (opcache_get_status(false)['opcache_enabled'] ?? false)) ? 'on' : 'off';
"""

# Rotates round-robin through pre-created sessions: `wrk -s FILE URL -- PATH`. The requests are
# formatted once in init(), so request() costs the same for every path.
ROTATION_LUA = """-- Generated by Benchmarks/run.py: {count} session IDs, sent round-robin as `Cookie: {cookie}=<id>`.
local ids = {{
{ids}
}}
local requests = {{}}
local i = 0

function init(args)
    local path = args[1] or "/"
    for k, id in ipairs(ids) do
        requests[k] = wrk.format("GET", path, {{ ["Cookie"] = "{cookie}=" .. id }})
    end
end

function request()
    i = i % #requests + 1
    return requests[i]
end
"""

# Sends exactly `target` requests to the fill path without a cookie (each creates a session), then
# only requests to the hello path (which create none) until all `target` answers are in; prints
# FILL-DONE so that the driver stops wrk (wrk itself would wait out -d). Counts statuses and
# Set-Cookie headers. wrk 4 calls request() once before the run to check the request it returns
# (script_verify_request, in thread 0) and never sends that one: the first call returns a hello
# request and is not counted, so a wrk without that probe would only send one harmless hello.
FILL_LUA = """-- Generated by Benchmarks/run.py.
local target = {target}
local probed, sent, answered, cookies, bad, extra = false, 0, 0, 0, 0, 0
local fill, idle

function init(args)
    fill = wrk.format("GET", args[1])
    idle = wrk.format("GET", args[2])
end

function request()
    if not probed then
        probed = true
        return idle
    end
    if sent < target then
        sent = sent + 1
        return fill
    end
    return idle
end

function response(status, headers, body)
    if body == "hello" and status == 200 then
        extra = extra + 1
        return
    end
    answered = answered + 1
    if status ~= 200 or body ~= "ok" then bad = bad + 1 end
    for name, _ in pairs(headers) do
        if string.lower(name) == "set-cookie" then cookies = cookies + 1 end
    end
    if answered == target then
        io.write(string.format("FILL-DONE answered=%d cookies=%d bad=%d extra=%d\\n", answered, cookies, bad, extra))
        io.stdout:flush()
        wrk.thread:stop()
    end
end
"""

failures = []
STARTED = time.time()


def progress(message):
    print(f"[{time.time() - STARTED:5.0f} s] {message}", file=sys.stderr)


def fail(message):
    failures.append(message)
    print(f"  FAILURE: {message}", file=sys.stderr)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, what, processes=()):
    deadline = time.time() + 30
    while time.time() < deadline:
        if check():
            return
        for name, process, _ in processes:
            if process.poll() is not None:
                raise SystemExit(f"{name} exited with status {process.returncode} while waiting for {what}")
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


def wrk(port, path, connections, script=None, duration=DURATION, label=None):
    """One wrk run; returns (req/s, p50 ms, p99 ms, requests). Non-2xx answers (wrk counts status
    >= 400) and socket errors are failures."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    if script:
        command += ["-s", script, f"http://127.0.0.1:{port}/", "--", path]
    else:
        command.append(f"http://127.0.0.1:{port}{path}")
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    for problem in re.findall(r"Non-2xx or 3xx responses: \d+|Socket errors: .*", out):
        fail(f"{label or path} -c{connections}: {problem}")
    return rps, p50, p99, requests


def get(connection, path, cookie=None):
    connection.request("GET", path, headers={"Cookie": cookie} if cookie else {})
    response = connection.getresponse()
    body = response.read().decode(errors="replace")
    return response.status, response.getheaders(), body


def create_sessions(port, path, cookie_name, count):
    """`count` requests to the counter without a cookie; returns the session IDs they set."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    ids, problems = [], 0
    for _ in range(count):
        status, headers, body = get(connection, path)
        values = [value for name, value in headers if name.lower() == "set-cookie"]
        match = next((m for m in (re.match(rf"{re.escape(cookie_name)}=([^;]+)", v) for v in values) if m), None)
        if status != 200 or body.strip() != "1" or not match:
            problems += 1
            if problems <= 3:
                fail(f"creating a session at {path}: status {status}, body {body[:80]!r}, Set-Cookie {values}")
            continue
        ids.append(match.group(1))
    connection.close()
    if problems:
        fail(f"{path}: {problems} of {count} session-creating requests failed")
    if len(set(ids)) != len(ids):
        fail(f"{path}: {len(ids) - len(set(ids))} duplicate session IDs")
    return ids


def check_counters(port, path, cookie_name, ids, counted, runs):
    """Reads every counter once more (one more increment each) and compares the increments with
    the requests wrk counted: at most one in-flight request per connection per wrk run goes
    uncounted when wrk stops."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    total, bad = 0, 0
    for session_id in ids:
        status, _, body = get(connection, path, f"{cookie_name}={session_id}")
        if status != 200 or not body.strip().isdigit():
            bad += 1
            continue
        total += int(body) - 2  # minus the creating request and this one
    connection.close()
    slack = CONNECTIONS * runs
    ok = bad == 0 and counted <= total <= counted + slack
    line = (f"{path}: {len(ids):,} sessions hold {total:,} increments; wrk counted {counted:,} requests "
            f"in {runs} runs (up to {slack} uncounted in-flight allowed)")
    if not ok:
        fail(f"{line}; {bad} unreadable counters")
    return line + (": ok" if ok else ": MISMATCH")


def rotation_script(path, cookie_name, ids):
    with open(path, "w") as script:
        script.write(ROTATION_LUA.format(count=len(ids), cookie=cookie_name,
                                         ids="\n".join(f'    "{session_id}",' for session_id in ids)))
    return path


def fill_sessions(port, script, fill_path, idle_path):
    """Runs the fill script and stops wrk (SIGINT) once it reports all answers in."""
    wrk_process = subprocess.Popen(["wrk", "-t1", f"-c{CONNECTIONS}", "-d600s", "-s", script,
                                    f"http://127.0.0.1:{port}/", "--", fill_path, idle_path],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started, report, output = time.time(), None, []
    try:
        for line in wrk_process.stdout:
            output.append(line)
            if line.startswith("FILL-DONE"):
                report = dict(item.split("=") for item in line.split()[1:])
                wrk_process.send_signal(signal.SIGINT)
        wrk_process.wait(timeout=30)
    finally:
        if wrk_process.poll() is None:
            wrk_process.kill()
            wrk_process.wait()
    seconds = time.time() - started
    if report is None:
        fail(f"the fill script did not finish: {''.join(output)[-500:]}")
        return None, seconds
    report = {name: int(value) for name, value in report.items()}
    if report["answered"] != FILL or report["cookies"] != FILL or report["bad"]:
        fail(f"fill: {report} (wanted {FILL} answers 200 'ok' with one Set-Cookie each)")
    for problem in re.findall(r"Non-2xx or 3xx responses: \d+|Socket errors: .*", "".join(output)):
        fail(f"fill: {problem}")
    return report, seconds


def start_postgres(work, start):
    """A PostgreSQL 15 of the driver's own: initdb in the work folder, the server in the
    foreground on a free loopback port (as the postgres user when root, which PostgreSQL
    refuses), with its installed durability settings (fsync, synchronous_commit on) and
    pg_stat_statements loaded (to count the statements). Returns (process, port, user)."""
    import pwd
    as_root = os.geteuid() == 0
    user = "postgres" if as_root else pwd.getpwuid(os.geteuid()).pw_name
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    os.makedirs(f"{work}/pg/socket")
    if as_root:
        subprocess.run(["chown", "-R", "postgres:postgres", f"{work}/pg"], check=True)
    subprocess.run(prefix + [f"{PG_BIN}/initdb", "-D", f"{work}/pg/data", "-A", "trust", "-U", user, "-E", "UTF8"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = free_port()
    process = start("postgres", prefix + [f"{PG_BIN}/postgres", "-D", f"{work}/pg/data", "-p", str(port), "-k", f"{work}/pg/socket",
                                          "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200",
                                          "-c", "shared_preload_libraries=pg_stat_statements"])
    return process, port, user


SWAPPED_PAIRS = {"sql-lite": "sql-php-files", "sql-pg-tcp": "sql-php-redis-tcp", "sql-pg": "sql-php-redis"}


def swap_pairs(cells):
    """The cells with each Swift cell and its reference (adjacent, SWAPPED_PAIRS) in the other order."""
    ordered = list(cells)
    for index in range(len(ordered) - 1):
        if SWAPPED_PAIRS.get(ordered[index][0]) == ordered[index + 1][0]:
            ordered[index], ordered[index + 1] = ordered[index + 1], ordered[index]
    return ordered


def pg_counts(port, user):
    """Statements executed (each one round trip for its request) and commits so far in ASPState, and
    WAL flushes (fsyncs) of the whole server. Commits reach the shared counters when a backend
    goes idle (at most 10 s later)."""
    out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", "ASPState", "-Atc",
                          "SELECT (SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE dbid = "
                          "(SELECT oid FROM pg_database WHERE datname = 'ASPState') AND query NOT LIKE '%pg_stat%'), "
                          "(SELECT xact_commit FROM pg_stat_database WHERE datname = 'ASPState'), (SELECT wal_sync FROM pg_stat_wal)"],
                         capture_output=True, text=True, check=True).stdout.strip()
    calls, commits, flushes = out.split("|")
    return int(calls), int(commits), int(flushes)


def find_php_fpm():
    for candidate in (os.environ.get("PHP_FPM"), shutil.which("php-fpm8.2"), "/usr/sbin/php-fpm8.2"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise SystemExit("php-fpm8.2 not found (scripts/setup php-fpm installs it; PHP_FPM=path overrides)")


def main():
    swift_binary, c_binary = sys.argv[1], sys.argv[2]
    state_binary = sys.argv[3] if len(sys.argv) > 3 else None
    tool_binary = sys.argv[4] if len(sys.argv) > 4 else None
    unknown = set(PARTS) - ALL_PARTS
    if unknown or not PARTS:
        raise SystemExit(f"ONLY: unknown parts {sorted(unknown)}; use {', '.join(sorted(ALL_PARTS))} (comma-separated)")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    logs = os.path.join(repo, "Benchmarks/.out/logs")  # kept after the run
    shutil.rmtree(logs, ignore_errors=True)
    os.makedirs(logs)
    work = tempfile.mkdtemp(prefix="sessionhost-bench-")
    for sub in ("logs", "run", "tmp", "empty-config", "www/php", "www/php-redis", "www/php-redis-unix", "php-sessions", "ss-config", "ss-www", "ss-app", "ss-redis",
                "sql-config", "sql-www", "sql-pg", "sql-pgtcp", "sql-lite"):
        os.makedirs(os.path.join(work, sub))
    os.chmod(work, 0o755)
    port = free_port()
    with open(os.path.join(work, "nginx.conf"), "w") as conf:
        conf.write(NGINX_CONF.format(user="user root;" if os.geteuid() == 0 else "", dir=work, port=port,
                                     keepalive=KEEPALIVE, params=os.path.join(repo, "nginx/sessionhost_params")))

    processes = []  # (name, Popen, stderr file)

    def start(name, command):
        stderr = open(os.path.join(logs, f"{name}.stderr"), "w")
        process = subprocess.Popen(command, stdout=stderr, stderr=stderr)
        processes.append((name, process, stderr))
        return process

    as_root = os.geteuid() == 0

    def swift_worker(name, sock, threads=THREADS):
        # An empty --config-dir: the built-in defaults (InProc sessions, cookies), not the repository's conf.d.
        # As root, Apache serves as www-data: the socket goes to that group.
        return start(name, [swift_binary, "serve", "--listen", f"unix:{work}/{sock}", "--threads", str(threads),
                            "--log-level", "warning", "--config-dir", f"{work}/empty-config"]
                     + (["--socket-group", "www-data"] if as_root else []))

    def stop(name, process):
        if process.poll() is not None:
            fail(f"{name} had exited before the end (status {process.returncode})")
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            fail(f"{name} did not stop within 20 s of SIGTERM; killed")
            process.kill()
            process.wait()
            return
        # The C worker keeps SIGTERM's default action (killed by it), and so does runuser, which
        # runs PostgreSQL as root (it passes the signal on, then dies of it); the others exit 0.
        if process.returncode != 0 and not ((name.startswith("c-hello") or name == "postgres") and process.returncode == -signal.SIGTERM):
            fail(f"{name} exited with status {process.returncode} after SIGTERM")

    def up(pattern):
        return lambda: os.path.exists(f"{work}/{pattern}")

    results, notes, memory, state_memory = {}, [], None, None
    cells = []  # (key, label, path, connections, script)
    cell_ports = {}  # key -> port, for cells not served through nginx
    hello_targets = [("nginx return 200", "/return"), ("C libfcgi", "/c-keep/"), ("Swift host", "/swift-keep/"),
                     ("C libfcgi", "/c-close/"), ("Swift host", "/swift-close/")]
    try:
        if "hello" in PARTS:
            start("c-hello", [c_binary, f"{work}/c.sock", str(THREADS)])
        if "apache" in PARTS:
            # A C worker of its own: every connection in Apache's pools pins one of its threads,
            # and sharing one with nginx's kept connections would starve nginx's close cells.
            start("c-hello-apache", [c_binary, f"{work}/c-apache.sock", str(THREADS)])
        swift = swift_worker("swift", "swift.sock") if {"hello", "sessions", "apache", "idle"} & set(PARTS) else None
        few = swift_worker("swift-few", "swift-few.sock", IDLE_THREADS) if "idle" in PARTS else None
        if "stateserver" in PARTS:
            state_port, redis_port = free_port(), free_port()
            state = start("state-server", [state_binary, "--listen", f"127.0.0.1:{state_port}", "--log-level", "warning"])
            redis = start("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                    "--unixsocket", f"{work}/redis.sock", "--unixsocketperm", "777",
                                    "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"])
            with open(f"{work}/ss-config/applicationHost.config", "w") as conf:
                conf.write(SS_APPLICATION_HOST)
            with open(f"{work}/ss-app/web.config", "w") as conf:
                conf.write(SS_WEB_CONFIG.format(state_port=state_port))
            with open(f"{work}/ss-redis/web.config", "w") as conf:
                conf.write(SS_REDIS_WEB_CONFIG.format(redis_port=redis_port))
            ss_worker = start("swift-ss", [swift_binary, "serve", "--listen", f"unix:{work}/swift-ss.sock", "--threads", str(THREADS),
                                           "--log-level", "warning", "--config-dir", f"{work}/ss-config"]
                              + (["--active-threads", SS_ACTIVE_THREADS] if SS_ACTIVE_THREADS else []))
            wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", state_port)) == 0, "the state server", processes)
            wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", redis_port)) == 0, "redis-server", processes)
        if "sql" in PARTS:
            postgres, pg_port, pg_user = start_postgres(work, start)
            wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", pg_port)) == 0, "PostgreSQL", processes)
            # Over PostgreSQL's Unix socket, as a worker on the database's machine connects (and as
            # php-fpm reaches redis in this part); a farm connects over TCP.
            pg_connection = f"host={work}/pg/socket port={pg_port} user={pg_user}"
            pg_tcp_connection = f"host=127.0.0.1 port={pg_port} user={pg_user}"
            lite_connection = f"sqlite:{work}/sql-sessions.db"
            for connection in (pg_connection, lite_connection):
                for attempt in range(50):  # the server accepts before it admits connections
                    installed = subprocess.run([tool_binary, "sql", "install", "--connection-string", connection], capture_output=True, text=True)
                    if installed.returncode == 0 or attempt == 49:
                        break
                    time.sleep(0.2)
                if installed.returncode != 0:
                    raise SystemExit(f"session-host sql install failed: {installed.stdout}{installed.stderr}")
                notes.append(installed.stdout.strip())
            subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(pg_port), "-U", pg_user, "-d", "ASPState", "-qc",
                            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"], check=True)
            with open(f"{work}/sql-config/applicationHost.config", "w") as conf:
                conf.write(SQL_APPLICATION_HOST)
            for folder, connection in (("sql-pg", pg_connection), ("sql-pgtcp", pg_tcp_connection), ("sql-lite", lite_connection)):
                with open(f"{work}/{folder}/web.config", "w") as conf:
                    conf.write(SQL_WEB_CONFIG.format(connection=connection))
            if "stateserver" not in PARTS:
                redis_port = free_port()
                start("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                "--unixsocket", f"{work}/redis.sock", "--unixsocketperm", "777",
                                "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"])
                wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", redis_port)) == 0, "redis-server", processes)
            start("swift-sql", [swift_binary, "serve", "--listen", f"unix:{work}/swift-sql.sock", "--threads", str(THREADS),
                                "--log-level", "warning", "--config-dir", f"{work}/sql-config"]
                  + (["--active-threads", SQL_ACTIVE_THREADS] if SQL_ACTIVE_THREADS else []))
        if {"sessions", "stateserver", "sql"} & set(PARTS):
            # The sql part has counters of its own (its own sessions, its own request counts).
            for folder, name in (("php", "counter"), ("php-redis", "counter"), ("php-redis-unix", "counter"), ("php", "counter-sql"), ("php-redis", "counter-sql")):
                with open(f"{work}/www/{folder}/{name}.php", "w") as script:
                    script.write(PHP_COUNTER)
            with open(f"{work}/www/php/opcache.php", "w") as script:
                script.write(PHP_OPCACHE)
            with open(f"{work}/php-fpm.conf", "w") as conf:
                conf.write(PHP_FPM_CONF.format(dir=work, children=PHP_CHILDREN))
                if {"stateserver", "sql"} & set(PARTS):
                    conf.write(PHP_FPM_REDIS_POOL.format(pool="php-redis", dir=work, children=PHP_CHILDREN, save_path=f"tcp://127.0.0.1:{redis_port}"))
                if "sql" in PARTS:
                    conf.write(PHP_FPM_REDIS_POOL.format(pool="php-redis-unix", dir=work, children=PHP_CHILDREN, save_path=f"unix://{work}/redis.sock"))
            php_fpm = find_php_fpm()
            start("php-fpm", [php_fpm, "-y", f"{work}/php-fpm.conf", "-F"] + (["-R"] if os.geteuid() == 0 else []))
        wait_for(lambda: all(os.path.exists(f"{work}/{sock}") for sock, part in
                             (("c.sock", "hello"), ("c-apache.sock", "apache"), ("swift.sock", "hello"), ("swift.sock", "sessions"),
                              ("swift.sock", "apache"), ("swift-few.sock", "idle"), ("php.sock", "sessions"),
                              ("swift-ss.sock", "stateserver"), ("php-redis.sock", "stateserver"),
                              ("swift-sql.sock", "sql"), ("php.sock", "sql"), ("php-redis.sock", "sql"), ("php-redis-unix.sock", "sql"))
                             if part in PARTS), "the workers", processes)
        if "apache" in PARTS:
            if as_root:  # c-hello makes its socket 0660 root:root; Apache's children run as www-data
                import grp
                os.chown(f"{work}/c-apache.sock", -1, grp.getgrnam("www-data").gr_gid)
            apache_port = free_port()
            with open(os.path.join(work, "httpd.conf"), "w") as conf:
                conf.write(APACHE_CONF.format(dir=work, port=apache_port, user="User www-data\nGroup www-data" if as_root else ""))
            start("apache", ["/usr/sbin/apache2", "-f", f"{work}/httpd.conf", "-DFOREGROUND"])
            wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", apache_port)) == 0, "Apache", processes)
        start("nginx", ["nginx", "-p", work, "-c", f"{work}/nginx.conf", "-e", f"{work}/logs/error.log"])
        wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, "nginx", processes)

        if "hello" in PARTS:
            idle = {"C": rss_kib(processes[0][1].pid), "Swift": rss_kib(swift.pid)}
            for connections in (1, 32):
                for name, path in hello_targets:
                    cells.append(((path, connections), name, path, connections, None))
        if "apache" in PARTS:
            for connections in (1, APACHE_CONNECTIONS):
                for name, path in (("C libfcgi", "/c/"), ("Swift host", "/swift/")):
                    key = ("apache", path, connections)
                    cells.append((key, f"Apache: {name}", path, connections, None))
                    cell_ports[key] = apache_port
        if "idle" in PARTS:
            cells += [(("idle", THREADS), f"Swift host, {THREADS} threads", "/swift-keep/", KEEPALIVE, None),
                      (("idle", IDLE_THREADS), f"Swift host, {IDLE_THREADS} threads", "/swift-few/", KEEPALIVE, None)]
        if "sessions" in PARTS:
            progress(f"creating {SESSIONS:,} ASP.NET sessions and {SESSIONS:,} PHP sessions")
            swift_ids = create_sessions(port, "/swift-keep/counter", ASP_COOKIE, SESSIONS)
            php_ids = create_sessions(port, "/php/counter.php", PHP_COOKIE, SESSIONS)
            php_files = len([f for f in os.listdir(f"{work}/php-sessions") if f.startswith("sess_")])
            if php_files != SESSIONS:
                fail(f"php-fpm: {php_files} session files for {SESSIONS} sessions")
            swift_lua = rotation_script(f"{work}/swift-sessions.lua", ASP_COOKIE, swift_ids)
            php_lua = rotation_script(f"{work}/php-sessions.lua", PHP_COOKIE, php_ids)
            shutil.copy(swift_lua, os.path.join(logs, "swift-sessions.lua"))
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            opcache = get(connection, "/php/opcache.php")[2]
            connection.close()
            notes.append(f"php-fpm: {php_fpm}, pm = static, {PHP_CHILDREN} children, files sessions "
                         f"({php_files:,} session files), opcache {opcache}")
            cells += [("lua-return", "nginx return 200 (same rotation; the ceiling)", "/return", CONNECTIONS, swift_lua),
                      ("swift-hello-plain", "Swift hello (no script, no cookie)", "/swift-keep/hello", CONNECTIONS, None),
                      ("swift-hello", "Swift hello (same rotation, no session)", "/swift-keep/hello", CONNECTIONS, swift_lua),
                      ("swift-counter", "Swift counter (ASP.NET session, InProc)", "/swift-keep/counter", CONNECTIONS, swift_lua),
                      ("php-counter", "php-fpm 8.2 counter (files sessions)", "/php/counter.php", CONNECTIONS, php_lua)]

        if "stateserver" in PARTS:
            progress(f"creating {SESSIONS:,} sessions each: Swift InProc, Swift StateServer, Swift Redis, php-fpm redis")
            ss_paths = {"ss-inproc": "/swift-ss/counter", "ss-state": "/swift-ss/ss/counter", "ss-redis": "/swift-ss/redis/counter",
                        "php-redis": "/php-redis/counter.php"}
            ss_ids = {key: create_sessions(port, path, PHP_COOKIE if key == "php-redis" else ASP_COOKIE, SESSIONS) for key, path in ss_paths.items()}
            ss_lua = {key: rotation_script(f"{work}/{key}.lua", PHP_COOKIE if key == "php-redis" else ASP_COOKIE, ids) for key, ids in ss_ids.items()}
            cells += [("ss-inproc", "Swift counter, InProc (the same worker)", ss_paths["ss-inproc"], CONNECTIONS, ss_lua["ss-inproc"]),
                      ("ss-state", "Swift counter, StateServer (session-state-server)", ss_paths["ss-state"], CONNECTIONS, ss_lua["ss-state"]),
                      ("ss-redis", "Swift counter, Custom: Redis (Microsoft's provider's keys; TCP)", ss_paths["ss-redis"], CONNECTIONS, ss_lua["ss-redis"]),
                      ("php-redis", "php-fpm 8.2 counter, redis sessions (locking on)", ss_paths["php-redis"], CONNECTIONS, ss_lua["php-redis"])]

        if "sql" in PARTS:
            progress(f"creating {SESSIONS:,} sessions each: Swift InProc, PostgreSQL, SQLite; php-fpm files, redis")
            # The order of a round: each Swift cell next to its reference (swapped every other
            # round, so that neither always follows the cell before), and InProc last, so that
            # PostgreSQL's deferred work after its cells (WAL writing, autovacuum) falls into a
            # cell that is not compared rather than into the SQLite pair's.
            sql_paths = {"sql-lite": "/swift-sql/lite/counter", "sql-php-files": "/php/counter-sql.php",
                         "sql-pg-tcp": "/swift-sql/pgtcp/counter", "sql-php-redis-tcp": "/php-redis/counter-sql.php",
                         "sql-pg": "/swift-sql/pg/counter", "sql-php-redis": "/php-redis-unix/counter.php",
                         "sql-inproc": "/swift-sql/counter"}
            sql_cookie = {key: PHP_COOKIE if key.startswith("sql-php") else ASP_COOKIE for key in sql_paths}
            sql_ids = {key: create_sessions(port, path, sql_cookie[key], SESSIONS) for key, path in sql_paths.items()}
            sql_lua = {key: rotation_script(f"{work}/{key}.lua", sql_cookie[key], ids) for key, ids in sql_ids.items()}
            sql_labels = {"sql-inproc": "Swift counter, InProc (the same worker)",
                          "sql-pg": "Swift counter, SQLServer on PostgreSQL 15 (Unix socket)",
                          "sql-pg-tcp": "Swift counter, SQLServer on PostgreSQL 15 (TCP, 127.0.0.1)",
                          "sql-lite": "Swift counter, SQLServer on SQLite", "sql-php-files": "php-fpm 8.2 counter, files sessions",
                          "sql-php-redis": "php-fpm 8.2 counter, redis sessions (locking on; Unix socket)",
                          "sql-php-redis-tcp": "php-fpm 8.2 counter, redis sessions (locking on; TCP, 127.0.0.1)"}
            cells += [(key, sql_labels[key], path, CONNECTIONS, sql_lua[key]) for key, path in sql_paths.items()
                      if not SQL_CELLS or key in SQL_CELLS]

        counted = {}
        pg_before = None
        if cells:
            for key, _, path, _, script in {(c[2], c[4], cell_ports.get(c[0], port)): c for c in cells}.values():  # warm-up, once per path
                counted[path] = counted.get(path, 0) + wrk(cell_ports.get(key, port), path, 32, script, duration=1, label=f"warm-up {path}")[3]
            if "sql" in PARTS:
                time.sleep(11)  # statistics of the warm-up reach the shared counters
                pg_before = pg_counts(pg_port, pg_user)
            for round_number in range(1, ROUNDS + 1):
                progress(f"round {round_number}/{ROUNDS}")
                for key, label, path, connections, script in (cells if round_number % 2 else swap_pairs(cells)):
                    result = wrk(cell_ports.get(key, port), path, connections, script, label=label)
                    results.setdefault(key, []).append(result)
                    counted[path] = counted.get(path, 0) + result[3]
        if "hello" in PARTS:
            loaded = {"C": rss_kib(processes[0][1].pid), "Swift": rss_kib(swift.pid)}
        if "sql" in PARTS:
            time.sleep(11)
            pg_after = pg_counts(pg_port, pg_user)
            pg_requests = sum(r[3] for key in ("sql-pg", "sql-pg-tcp") for r in results.get(key, []))
            pg_trips = [(after - before) / max(1, pg_requests) for before, after in zip(pg_before, pg_after)]
            progress("reading back every SQL-part counter")
            for key, path in sql_paths.items():
                if key in results:
                    notes.append(check_counters(port, path, sql_cookie[key], sql_ids[key], counted[path], ROUNDS + 1))
        if "idle" in PARTS:
            notes.append(f"idle part: the {IDLE_THREADS}-thread worker's RSS after the load: {rss_kib(few.pid) / 1024:.1f} MiB")
        if "sessions" in PARTS:
            progress("reading back every counter")
            notes.append(check_counters(port, "/swift-keep/counter", ASP_COOKIE, swift_ids, counted["/swift-keep/counter"], ROUNDS + 1))
            notes.append(check_counters(port, "/php/counter.php", PHP_COOKIE, php_ids, counted["/php/counter.php"], ROUNDS + 1))
            notes.append(f"Swift worker RSS with {SESSIONS:,} counter sessions: {rss_kib(swift.pid) / 1024:.1f} MiB")

        if "stateserver" in PARTS:
            progress("reading back every StateServer-part counter")
            for key, path in ss_paths.items():
                notes.append(check_counters(port, path, PHP_COOKIE if key == "php-redis" else ASP_COOKIE, ss_ids[key], counted[path], ROUNDS + 1))
            progress(f"state server memory: {FILL:,} sessions")
            state_cold = rss_kib(state.pid)
            with open(f"{work}/fill-ss.lua", "w") as script:
                script.write(FILL_LUA.format(target=FILL))
            ss_fill_report, ss_fill_seconds = fill_sessions(port, f"{work}/fill-ss.lua", "/swift-ss/ss/fill", "/swift-ss/ss/hello")
            time.sleep(1)
            state_memory = {"before": state_cold, "filled": rss_kib(state.pid), "seconds": ss_fill_seconds, "report": ss_fill_report}

        if "memory" in PARTS:
            progress(f"memory: a fresh worker, {FILL:,} sessions")
            mem = swift_worker("swift-mem", "swift-mem.sock")
            wait_for(up("swift-mem.sock"), "the memory worker", processes)
            time.sleep(0.5)
            cold = rss_kib(mem.pid)
            # Warm-up without sessions: 32 connections touch the worker threads and malloc arenas.
            wrk(port, "/swift-mem/hello", CONNECTIONS, duration=1, label="memory warm-up")
            warm = rss_kib(mem.pid)
            with open(f"{work}/fill.lua", "w") as script:
                script.write(FILL_LUA.format(target=FILL))
            report, seconds = fill_sessions(port, f"{work}/fill.lua", "/swift-mem/fill", "/swift-mem/hello")
            time.sleep(1)
            filled = rss_kib(mem.pid)
            progress("done")
            memory = {"cold": cold, "warm": warm, "filled": filled, "report": report, "seconds": seconds}
    finally:
        for name, process, stderr in reversed(processes):
            stop(name, process)
            stderr.close()
        for log in ("logs/error.log", "logs/php-fpm.log", "logs/php-errors.log", "logs/apache-error.log"):
            if os.path.exists(f"{work}/{log}"):
                shutil.copy(f"{work}/{log}", os.path.join(logs, "nginx-error.log" if log == "logs/error.log" else os.path.basename(log)))
        shutil.rmtree(work, ignore_errors=True)

    def median(key, field):
        return statistics.median(r[field] for r in results[key])

    print(f"\n{ROUNDS} interleaved rounds of {DURATION} s per cell, medians; wrk -t1; nginx 1 worker; "
          f"{THREADS} worker threads; upstream keepalive {KEEPALIVE}")
    if "hello" in PARTS:
        print(f"\n| target | upstream | conns | req/s | p50 ms | p99 ms |")
        print(f"|---|---|---:|---:|---:|---:|")
        for connections in (1, 32):
            for name, path in hello_targets:
                key = (path, connections)
                upstream = "-" if path == "/return" else ("keepalive" if "keep" in path else "close")
                print(f"| {name} | {upstream} | {connections} | {median(key, 0):,.0f} | "
                      f"{median(key, 1):.3f} | {median(key, 2):.3f} |")
        print(f"\n| Swift/C | conns | req/s ratio | p99 ratio |")
        print(f"|---|---:|---:|---:|")
        for upstream in ("keep", "close"):
            for connections in (1, 32):
                c_key, swift_key = (f"/c-{upstream}/", connections), (f"/swift-{upstream}/", connections)
                rps = median(swift_key, 0) / median(c_key, 0)
                p99 = median(swift_key, 2) / median(c_key, 2)
                print(f"| {'keepalive' if upstream == 'keep' else 'close'} | {connections} | {rps:.3f} | {p99:.3f} |")
        print(f"\nworker RSS (MiB): idle C {idle['C'] / 1024:.1f} / Swift {idle['Swift'] / 1024:.1f}; "
              f"after load C {loaded['C'] / 1024:.1f} / Swift {loaded['Swift'] / 1024:.1f}")
    if "apache" in PARTS:
        print(f"\nThrough Apache httpd (mpm_event, mod_proxy_fcgi, enablereuse=on), the same workers\n")
        print("| target | conns | req/s | p50 ms | p99 ms |")
        print("|---|---:|---:|---:|---:|")
        for connections in (1, APACHE_CONNECTIONS):
            for name, path in (("C libfcgi", "/c/"), ("Swift host", "/swift/")):
                key = ("apache", path, connections)
                print(f"| {name} | {connections} | {median(key, 0):,.0f} | {median(key, 1):.3f} | {median(key, 2):.3f} |")
        print("\n| Swift/C through Apache | conns | req/s ratio | p99 ratio |")
        print("|---|---:|---:|---:|")
        for connections in (1, APACHE_CONNECTIONS):
            c_key, swift_key = ("apache", "/c/", connections), ("apache", "/swift/", connections)
            print(f"| keepalive | {connections} | {median(swift_key, 0) / median(c_key, 0):.3f} | {median(swift_key, 2) / median(c_key, 2):.3f} |")
    if "idle" in PARTS:
        print(f"\nMore kept connections than threads: nginx keeps {KEEPALIVE} upstream connections, wrk -c{KEEPALIVE}\n")
        print("| worker | req/s | p50 ms | p99 ms |")
        print("|---|---:|---:|---:|")
        for threads in (THREADS, IDLE_THREADS):
            key = ("idle", threads)
            print(f"| Swift host, {threads} threads | {median(key, 0):,.0f} | {median(key, 1):.3f} | {median(key, 2):.3f} |")
        print(f"\n{IDLE_THREADS} threads / {THREADS} threads: {median(('idle', IDLE_THREADS), 0) / median(('idle', THREADS), 0):.3f} (req/s)")
    if "sessions" in PARTS:
        print(f"\nSessions: {SESSIONS:,} pre-created sessions per target, rotated round-robin by a wrk Lua script, "
              f"-c{CONNECTIONS}, upstream keepalive\n")
        print("| target | req/s | p50 ms | p99 ms |")
        print("|---|---:|---:|---:|")
        for key, label, *_ in cells:
            if key in ("lua-return", "swift-hello-plain", "swift-hello", "swift-counter", "php-counter"):
                print(f"| {label} | {median(key, 0):,.0f} | {median(key, 1):.3f} | {median(key, 2):.3f} |")
        per_round_hello = [c[0] / h[0] for c, h in zip(results["swift-counter"], results["swift-hello"])]
        per_round_php = [c[0] / p[0] for c, p in zip(results["swift-counter"], results["php-counter"])]
        per_round_plain = [c[0] / h[0] for c, h in zip(results["swift-counter"], results["swift-hello-plain"])]
        hello_ratio = median("swift-counter", 0) / median("swift-hello", 0)
        plain_ratio = median("swift-counter", 0) / median("swift-hello-plain", 0)
        php_ratio = median("swift-counter", 0) / median("php-counter", 0)
        print("\n| ratio (req/s, medians) | value | per round | target |")
        print("|---|---:|---|---|")
        print(f"| Swift counter / Swift hello | {hello_ratio:.3f} | {', '.join(f'{r:.2f}' for r in per_round_hello)} | ≥ 0.85 "
              f"{'met' if hello_ratio >= 0.85 else 'NOT met'} |")
        print(f"| Swift counter / Swift hello without cookie | {plain_ratio:.3f} | {', '.join(f'{r:.2f}' for r in per_round_plain)} | ≥ 0.85 "
              f"{'met' if plain_ratio >= 0.85 else 'NOT met'} |")
        print(f"| Swift counter / php-fpm counter | {php_ratio:.2f} | {', '.join(f'{r:.2f}' for r in per_round_php)} | ≥ 2 "
              f"{'met' if php_ratio >= 2 else 'NOT met'} |")
    if "stateserver" in PARTS:
        print(f"\nStateServer: {SESSIONS:,} pre-created sessions per target, rotated round-robin by a wrk Lua script, "
              f"-c{CONNECTIONS}, upstream keepalive; the state server and redis-server on this machine\n")
        print("| target | req/s | p50 ms | p99 ms |")
        print("|---|---:|---:|---:|")
        for key in ("ss-inproc", "ss-state", "ss-redis", "php-redis"):
            label = next(c[1] for c in cells if c[0] == key)
            print(f"| {label} | {median(key, 0):,.0f} | {median(key, 1):.3f} | {median(key, 2):.3f} |")
        per_round = [s[0] / p[0] for s, p in zip(results["ss-state"], results["php-redis"])]
        ratio = median("ss-state", 0) / median("php-redis", 0)
        print("\n| ratio (req/s, medians) | value | per round | target |")
        print("|---|---:|---|---|")
        print(f"| StateServer counter / php-fpm redis counter | {ratio:.2f} | {', '.join(f'{r:.2f}' for r in per_round)} | ≥ 1.5 "
              f"{'met' if ratio >= 1.5 else 'NOT met'} |")
        print(f"| StateServer counter / InProc counter | {median('ss-state', 0) / median('ss-inproc', 0):.2f} | | |")
        print(f"| StateServer p99 / php-fpm redis p99 | {median('ss-state', 2) / median('php-redis', 2):.2f} | | |")
        per_round_redis = [s[0] / p[0] for s, p in zip(results["ss-redis"], results["php-redis"])]
        redis_ratio = median("ss-redis", 0) / median("php-redis", 0)
        print(f"| Redis counter / php-fpm redis counter (same redis-server, TCP) | {redis_ratio:.2f} | {', '.join(f'{r:.2f}' for r in per_round_redis)} | ≥ 1.5 "
              f"{'met' if redis_ratio >= 1.5 else 'NOT met'} |")
        print(f"| Redis p99 / php-fpm redis p99 | {median('ss-redis', 2) / median('php-redis', 2):.2f} | | |")
        if state_memory:
            added = state_memory["filled"] - state_memory["before"]
            print(f"\nsession-state-server RSS: {state_memory['before'] / 1024:.1f} MiB with the {3 * SESSIONS:,} counter-part sessions "
                  f"(InProc ones are not there), {state_memory['filled'] / 1024:.1f} MiB after {FILL:,} more sessions of four short "
                  f"strings ({added * 1024 / FILL:,.0f} bytes each, filled in {state_memory['seconds']:.1f} s through nginx)")
    if "sql" in PARTS:
        print(f"\nSQLServer: {SESSIONS:,} pre-created sessions per target, rotated round-robin by a wrk Lua script, "
              f"-c{CONNECTIONS}, upstream keepalive; the Swift worker with --active-threads {SQL_ACTIVE_THREADS or 'default (one per core)'}; "
              f"on this machine: PostgreSQL 15 (fsync, synchronous_commit on), "
              f"redis-server (no persistence), each reached over TCP and over its Unix socket; SQLite (WAL, synchronous=NORMAL)\n")
        print("| target | req/s | p50 ms | p99 ms |")
        print("|---|---:|---:|---:|")
        for key in [k for k in ("sql-inproc", "sql-pg", "sql-pg-tcp", "sql-lite", "sql-php-files", "sql-php-redis", "sql-php-redis-tcp") if k in results]:
            label = next(c[1] for c in cells if c[0] == key)
            print(f"| {label} | {median(key, 0):,.0f} | {median(key, 1):.3f} | {median(key, 2):.3f} |")
        print("\n| ratio (req/s, medians) | value | per round | target |")
        print("|---|---:|---|---|")
        for swift_key, php_key, target in (("sql-pg-tcp", "sql-php-redis-tcp", 0.8), ("sql-pg", "sql-php-redis", 0.8), ("sql-lite", "sql-php-files", 1.0)):
            if swift_key not in results or php_key not in results:
                continue
            per_round = [s[0] / p[0] for s, p in zip(results[swift_key], results[php_key])]
            ratio = median(swift_key, 0) / median(php_key, 0)
            print(f"| {next(c[1] for c in cells if c[0] == swift_key)} / {next(c[1] for c in cells if c[0] == php_key)} | {ratio:.2f} | "
                  f"{', '.join(f'{r:.2f}' for r in per_round)} | ≥ {target} {'met' if ratio >= target else 'NOT met'} |")
        for swift_key, php_key, label in (("sql-pg-tcp", "sql-php-redis-tcp", "PostgreSQL p99 / php-fpm redis p99 (TCP)"),
                                          ("sql-pg", "sql-php-redis", "PostgreSQL p99 / php-fpm redis p99 (Unix sockets)"),
                                          ("sql-lite", "sql-php-files", "SQLite p99 / php-fpm files p99")):
            if swift_key in results and php_key in results:
                print(f"| {label} | {median(swift_key, 2) / median(php_key, 2):.2f} | | |")
        print(f"\nPostgreSQL per counter request (measured rounds, pg_stat_statements): {pg_trips[0]:.2f} statements "
              f"(the request waits one round trip for each), {pg_trips[1]:.2f} transactions (pipelined batches of several requests' "
              f"statements: one round trip and one commit each), {pg_trips[2]:.2f} WAL flushes (fsync)")
    if memory:
        added = memory["filled"] - memory["cold"]
        added_warm = memory["filled"] - memory["warm"]
        print(f"\nInProc memory: a fresh worker ({THREADS} threads), {FILL:,} sessions of four short strings "
              f"created through nginx in {memory['seconds']:.1f} s\n")
        print("| worker RSS | MiB |")
        print("|---|---:|")
        print(f"| idle, just started | {memory['cold'] / 1024:.1f} |")
        print(f"| after 1 s of hello at -c{CONNECTIONS} (no sessions) | {memory['warm'] / 1024:.1f} |")
        print(f"| with {FILL:,} sessions | {memory['filled'] / 1024:.1f} |")
        print(f"| **added by the sessions** (vs. idle) | **{added / 1024:.1f}** ({added * 1024 / 1e6:.1f} MB) |")
        print(f"\nper session: {added * 1024 / FILL:,.0f} bytes vs. idle, {added_warm * 1024 / FILL:,.0f} bytes vs. "
              f"after the warm-up; target ≤ 150 MB for 100k: "
              f"{'met' if added * 1024 <= 150e6 * FILL / 100000 else 'NOT met'}")
        if memory["report"]:
            r = memory["report"]
            print(f"fill check: {r['answered']:,} answers, {r['cookies']:,} Set-Cookie headers, {r['bad']} not 200 'ok' "
                  f"({r['extra']} trailing hello requests created no session)")
    for note in notes:
        print(note)

    print(f"\nworker stderr and nginx/php-fpm logs: {os.path.relpath(logs, os.getcwd())}/")
    for name in sorted(os.listdir(logs)):
        if name.endswith(".lua"):
            continue
        with open(os.path.join(logs, name), errors="replace") as log:
            lines = [line.rstrip() for line in log if line.strip()]
        if name.startswith("php-fpm"):  # its notices (starting, ready, exiting) are not problems
            lines = [line for line in lines if "NOTICE" not in line]
        if name in ("apache.stderr", "apache-error.log"):  # its startup notices are not problems
            lines = [line for line in lines if ":notice]" not in line]
            if lines:
                fail(f"{name}: Apache logged {len(lines)} problems, e.g. {lines[0][:200]}")
        if lines:
            print(f"  {name}: {len(lines)} lines, e.g. {lines[0][:200]}")
            if name.startswith("swift"):
                fail(f"{name}: the Swift worker wrote {len(lines)} lines at level warning or above")
    if failures:
        print(f"\nFAILURES ({len(failures)}):")
        for failure in failures:
            print(f"- {failure}")
        sys.exit(1)
    print("\nno failures: every answer 2xx, no socket errors, workers stopped cleanly")


if __name__ == "__main__":
    main()
