#!/usr/bin/env python3
"""Per-operation store costs of `cloakroom serve`, for docs/SCALING.md.

    python3 measure.py redis    [--logins K] [--checks N] [--users M]
    python3 measure.py postgres [--logins K] [--checks N]

redis: sessions in Redis (redis://127.0.0.1:6379, a unique key prefix), accounts in SQLite in a
temporary data directory. Reports Redis memory per session (INFO memory used_memory delta, and
MEMORY USAGE of the keys) and Redis commands per login and per forward-auth check (INFO
commandstats deltas), with the session cache off (the default for Redis) and push, and the
cost of one last-seen write (touch). Deletes its keys at the end.

postgres: accounts in PostgreSQL (database test on 127.0.0.1:5432, user postgres, a unique
schema), sessions in Redis, then sessions in PostgreSQL too. PostgreSQL is reached through a
counting proxy (pgproxy.py), which counts statements (CommandComplete) and round trips
(ReadyForQuery) exactly; pg_stat_user_tables for the schema and pg_stat_database for the
database give rows and transactions. Drops its schema at the end.

Only the standard library, redis-cli and psql. Every server listens on 127.0.0.1.
"""

import argparse
from pathlib import Path
import http.client
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgproxy import PgProxy  # noqa: E402

# The binary to measure: CLOAKROOM_BIN, else the debug build in the cargo target directory.
BIN = os.environ.get("CLOAKROOM_BIN") or str(
    Path(os.environ.get("CARGO_TARGET_DIR") or Path(__file__).resolve().parent.parent / "target")
    / "debug" / "cloakroom")
REDIS_PORT = os.environ.get("CRDOCS_REDIS_PORT", "6379")
REDIS = ["redis-cli", "-h", "127.0.0.1", "-p", REDIS_PORT]
PG_DIRECT = "postgres://postgres@127.0.0.1:5432/test"
UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
PASSWORD = "correct horse battery staple 42"
COOKIE = "__Host-cloakroom"


def log(*a):
    print(*a, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def redis(*args):
    return subprocess.run(REDIS + list(args), capture_output=True, text=True, check=True).stdout


def redis_info(section):
    out = {}
    for line in redis("INFO", section).splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            out[k] = v.strip()
    return out


def commandstats():
    stats = {}
    for k, v in redis_info("commandstats").items():
        fields = dict(f.split("=") for f in v.split(","))
        stats[k.removeprefix("cmdstat_")] = int(fields["calls"])
    return stats


def delta(after, before):
    """after - before, leaving out INFO (this script's own calls)."""
    return {k: after[k] - before.get(k, 0) for k in after
            if after[k] - before.get(k, 0) and k != "info"}


def scan(pattern):
    out = subprocess.run(
        REDIS + ["--scan", "--pattern", pattern], capture_output=True, text=True, check=True
    ).stdout
    return [k for k in out.splitlines() if k]


def psql(sql):
    return subprocess.run(
        ["psql", PG_DIRECT, "-Atq", "-F", "\t", "-c", sql],
        capture_output=True, text=True, check=True,
    ).stdout


class Server:
    def __init__(self, data_dir, args, name):
        self.port = free_port()
        self.origin = f"http://localhost:{self.port}"
        self.cmd = [BIN, "serve", "--data-dir", data_dir, "--listen",
                    f"127.0.0.1:{self.port}"] + args
        self.logf = open(os.path.join(data_dir, f"{name}.log"), "w")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLOAKROOM_")}
        env["CLOAKROOM_LOG"] = "warn"
        if os.environ.get("CRDOCS_SECRETS"):  # builds that keep signing keys in PostgreSQL
            env["CLOAKROOM_SECRETS"] = os.environ["CRDOCS_SECRETS"]
        log("$", " ".join(self.cmd))
        self.proc = subprocess.Popen(self.cmd, stdout=self.logf, stderr=self.logf, env=env)
        deadline = time.time() + 60
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"server did not start; see {self.logf.name}")
            time.sleep(0.2)
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(self, method, path, body=None, headers=None):
        h = {"User-Agent": UA}
        h.update(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body)
            h["Content-Type"] = "application/json"
            h["Origin"] = self.origin
            h["Sec-Fetch-Site"] = "same-origin"
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=data, headers=h)
                r = self.conn.getresponse()
                payload = r.read()
                break
            except (http.client.RemoteDisconnected, ConnectionError, BrokenPipeError):
                self.conn.close()  # the server closed an idle kept-alive connection
                if attempt:
                    raise
        return r.status, r.getheaders(), payload

    def login(self, username, xff=None):
        headers = {"X-Forwarded-For": xff} if xff else None
        status, headers, body = self.request(
            "POST", "/api/login", {"username": username, "password": PASSWORD}, headers)
        if status != 200:
            raise SystemExit(f"login {username}: {status} {body[:200]!r}")
        return cookie_of(headers)

    def signup(self, username, xff):
        status, headers, body = self.request(
            "POST", "/api/signup", {"username": username, "password": PASSWORD},
            {"X-Forwarded-For": xff})
        if status not in (200, 201):
            raise SystemExit(f"signup {username}: {status} {body[:200]!r}")
        return cookie_of(headers)

    def check(self, cookie):
        status, _, body = self.request(
            "GET", "/api/authz/forward-auth", headers={"Cookie": f"{COOKIE}={cookie}"})
        if status != 200:
            raise SystemExit(f"forward auth: {status} {body[:200]!r}")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.logf.close()


def cookie_of(headers):
    for k, v in headers:
        if k.lower() == "set-cookie" and v.startswith(COOKIE + "="):
            return v.split(";", 1)[0].split("=", 1)[1]
    raise SystemExit(f"no session cookie in {headers}")


def user_add(data_dir, args, username):
    cmd = [BIN, "user", "add", username, "--data-dir", data_dir] + args
    log("$ printf '<password>\\n' |", " ".join(cmd))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOAKROOM_")}
    if os.environ.get("CRDOCS_SECRETS"):
        env["CLOAKROOM_SECRETS"] = os.environ["CRDOCS_SECRETS"]
    subprocess.run(cmd, input=PASSWORD + "\n", text=True, check=True, env=env,
                   capture_output=True)


def monitor(label, n, fn):
    """Runs fn n times under MONITOR: what clients sent, apart from what scripts ran."""
    out = tempfile.NamedTemporaryFile("w+", delete=False)
    mon = subprocess.Popen(REDIS + ["MONITOR"], stdout=out, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    for i in range(n):
        fn(i)
    time.sleep(0.5)
    mon.terminate()
    mon.wait()
    client, lua = {}, {}
    for line in open(out.name):
        if '"' not in line or "]" not in line:
            continue
        source = line.split("[", 1)[1].split("]", 1)[0]
        cmd = line.split('"', 2)[1].lower()
        if cmd in ("info", "memory", "scan", "monitor", "object", "client"):
            continue  # this script's own
        d = lua if source.endswith("lua") else client
        d[cmd] = d.get(cmd, 0) + 1
    os.unlink(out.name)
    r = {"sent_by_server_per_op": per(client, n), "run_inside_scripts_per_op": per(lua, n)}
    log(f"  MONITOR {label}: {json.dumps(r)}")
    return r


def settle_memory():
    time.sleep(1.0)
    return int(redis_info("memory")["used_memory"])


def timed(label, n, fn):
    t = time.time()
    for i in range(n):
        fn(i)
    dt = time.time() - t
    log(f"  {label}: {n} in {dt:.1f} s")


def per(d, n):
    return {k: round(v / n, 3) for k, v in sorted(d.items())}


def memory_usage(keys):
    sizes = []
    for k in keys:
        out = redis("MEMORY", "USAGE", k, "SAMPLES", "0").strip()
        if out:
            sizes.append(int(out))
    return sizes


def run_redis(a):
    prefix = f"crdocs{secrets.token_hex(4)}:"
    data_dir = tempfile.mkdtemp(prefix="crdocs-redis-")
    store = ["--session-store", "redis", "--redis-url", f"redis://127.0.0.1:{REDIS_PORT}",
             "--redis-key-prefix", prefix]
    results = {"prefix": prefix, "redis_version": redis_info("server")["redis_version"]}
    log(f"# redis: prefix {prefix}, data dir {data_dir}")
    log("# other clients connected:", len(redis("CLIENT", "LIST").splitlines()) - 1)
    servers = []
    try:
        # 1. One user, K logins (as the brief: `cloakroom user add`, then POST /api/login).
        s = Server(data_dir, store, "one-user")
        servers.append(s)
        user_add(data_dir, store, "alice")
        warm = s.login("alice")
        s.check(warm)  # scripts loaded, connections open
        m0, c0 = settle_memory(), commandstats()
        cookies = []
        timed("logins (one user)", a.logins, lambda i: cookies.append(s.login("alice")))
        m1, c1 = settle_memory(), commandstats()
        keys = scan(prefix + "s:*")
        idx = scan(prefix + "{u:*}:idx")
        rec = memory_usage(keys[:200])
        idx_sizes = memory_usage(idx)
        results["one_user"] = {
            "logins": a.logins,
            "used_memory_delta": m1 - m0,
            "used_memory_per_session": round((m1 - m0) / a.logins, 1),
            "session_keys": len(keys),
            "record_memory_usage_avg": round(sum(rec) / len(rec), 1),
            "record_memory_usage_min_max": [min(rec), max(rec)],
            "index_keys": len(idx),
            "index_memory_usage": idx_sizes,
            "index_encoding": [redis("OBJECT", "ENCODING", k).strip() for k in idx],
            "record_fields": redis("HLEN", keys[0]).strip(),
            "record_ttl_s": redis("TTL", keys[0]).strip(),
            "commands_per_login": per(delta(c1, c0), a.logins),
        }
        # 2. Forward-auth checks, cache off (the default for Redis): one hot session, then
        #    every session in turn. No session is due a last-seen write (all under 60 s old).
        c2 = commandstats()
        timed("checks (one session)", a.checks, lambda i: s.check(warm))
        c3 = commandstats()
        timed("checks (all sessions)", a.checks, lambda i: s.check(cookies[i % len(cookies)]))
        c4 = commandstats()
        results["checks_cache_off"] = {
            "checks": a.checks,
            "commands_per_check_one_session": per(delta(c3, c2), a.checks),
            "commands_per_check_many_sessions": per(delta(c4, c3), a.checks),
        }
        results["monitor_login"] = monitor("login", 5, lambda i: s.login("alice"))
        results["monitor_check"] = monitor("check", 5, lambda i: s.check(warm))
        s.stop()
        servers.remove(s)

        # 3. The same with --session-cache push: hits never reach Redis.
        s = Server(data_dir, store + ["--session-cache", "push"], "push")
        servers.append(s)
        for c in cookies:
            s.check(c)  # fill the cache
        c5 = commandstats()
        timed("checks (push, all sessions)", a.checks,
              lambda i: s.check(cookies[i % len(cookies)]))
        c6 = commandstats()
        results["checks_cache_push"] = {
            "checks": a.checks,
            "commands_per_check": per(delta(c6, c5), a.checks),
        }
        s.stop()
        servers.remove(s)

        # 4. A last-seen write (touch): touch interval 1 s, one check every 1.2 s.
        s = Server(data_dir, store + ["--touch-interval-secs", "1"], "touch")
        servers.append(s)
        s.check(warm)
        n = a.touches
        c7 = commandstats()
        timed("checks 1.2 s apart (each due a touch)", n,
              lambda i: (time.sleep(1.2), s.check(warm)))
        c8 = commandstats()
        results["checks_with_touch"] = {
            "checks": n,
            "commands_per_check": per(delta(c8, c7), n),
        }
        results["monitor_touch"] = monitor("check due a touch", 3,
                                           lambda i: (time.sleep(1.2), s.check(warm)))
        s.stop()
        servers.remove(s)

        # 5. Many users, two sessions each (sign-up, then a login): small per-user indexes.
        s = Server(data_dir, store, "many-users")
        servers.append(s)
        m2 = settle_memory()
        before = len(scan(prefix + "s:*"))
        idx_before = set(scan(prefix + "{u:*}:idx"))

        def two_sessions(i):
            name = f"user{i:06d}"
            xff = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
            s.signup(name, xff)
            s.login(name, xff)

        timed("users signed up and logged in", a.users, two_sessions)
        m3 = settle_memory()
        keys = scan(prefix + "s:*")
        idx = [k for k in scan(prefix + "{u:*}:idx") if k not in idx_before]
        sessions = len(keys) - before
        rec = memory_usage([k for k in keys][-200:])
        idx_sizes = memory_usage(idx[:200])
        results["many_users"] = {
            "users": a.users,
            "sessions": sessions,
            "used_memory_delta": m3 - m2,
            "used_memory_per_session": round((m3 - m2) / sessions, 1),
            "record_memory_usage_avg": round(sum(rec) / len(rec), 1),
            "index_memory_usage_avg": round(sum(idx_sizes) / len(idx_sizes), 1),
            "index_keys": len(idx),
            "index_encoding": sorted({redis("OBJECT", "ENCODING", k).strip() for k in idx[:20]}),
            "sample_keys": [keys[-1], idx[0]],
        }
        s.stop()
        servers.remove(s)
    finally:
        for s in servers:
            s.stop()
        keys = scan(prefix + "*")
        for i in range(0, len(keys), 500):
            redis("DEL", *keys[i:i + 500])
        left = scan(prefix + "*")
        log(f"# cleanup: deleted {len(keys)} keys under {prefix}; left: {len(left)}")
        shutil.rmtree(data_dir, ignore_errors=True)
    print(json.dumps(results, indent=2))


PG_DB_COLS = ("xact_commit", "xact_rollback", "tup_returned", "tup_fetched",
              "tup_inserted", "tup_updated", "tup_deleted", "blks_hit", "blks_read")
PG_TABLE_COLS = ("seq_scan", "idx_scan", "n_tup_ins", "n_tup_upd", "n_tup_hot_upd",
                 "n_tup_del")


def pg_stats(schema):
    time.sleep(12)  # other backends flush their statistics when idle (at most every 10 s)
    row = psql("SELECT " + ", ".join(PG_DB_COLS) +
               " FROM pg_stat_database WHERE datname = 'test'").strip().split("\t")
    db = {k: int(v) for k, v in zip(PG_DB_COLS, row)}
    tables = {}
    for line in psql("SELECT relname, " + ", ".join(f"coalesce({c}, 0)" for c in PG_TABLE_COLS) +
                     f" FROM pg_stat_user_tables WHERE schemaname = '{schema}'").splitlines():
        name, *vals = line.split("\t")
        for k, v in zip(PG_TABLE_COLS, vals):
            if int(v):
                tables[f"{name}.{k}"] = int(v)
    return db, tables


def pg_snapshot(proxy, schema):
    db, tables = pg_stats(schema)
    client, server, conns = proxy.snapshot()
    return {"db": db, "tables": tables, "client": dict(client), "server": dict(server),
            "connections": conns}


def pg_delta(after, before, n, idle=None):
    """(after - before) / n; with idle (an idle window's raw delta), that window's work (the
    outbox's polling, this script's own statistics queries) is taken off first."""
    d = {}
    for part in ("db", "tables", "client", "server"):
        raw = delta(after[part], before[part])
        if idle:
            raw = {k: v - idle[part].get(k, 0) for k, v in raw.items()}
        d[part] = per(raw, n)
    return d


def run_postgres(a):
    schema = f"crdocs_{secrets.token_hex(4)}"
    prefix = f"crdocs{secrets.token_hex(4)}:"
    data_dir = tempfile.mkdtemp(prefix="crdocs-pg-")
    proxy = PgProxy()
    via_proxy = f"postgres://postgres@127.0.0.1:{proxy.port}/test"
    accounts = ["--account-store", "postgres", "--postgres-url", via_proxy,
                "--postgres-schema", schema]
    redis_sessions = ["--session-store", "redis", "--redis-url", f"redis://127.0.0.1:{REDIS_PORT}",
                      "--redis-key-prefix", prefix]
    results = {"schema": schema, "pg_version": psql("SHOW server_version").strip()}
    log(f"# postgres: schema {schema}, redis prefix {prefix}, proxy port {proxy.port}")
    log("# other sessions on database test:",
        psql("SELECT count(*) FROM pg_stat_activity WHERE datname = 'test' "
             "AND pid <> pg_backend_pid()").strip())
    servers = []
    try:
        for variant, sessions in (("sessions_redis", redis_sessions),
                                  ("sessions_postgres", ["--session-store", "postgres"])):
            args = accounts + sessions
            s = Server(data_dir, args, variant)
            servers.append(s)
            user = f"alice{variant[-5:]}"
            user_add(data_dir, [a.replace(via_proxy, PG_DIRECT) for a in args], user)
            warm = s.login(user)
            s.check(warm)
            r = {}
            p0 = pg_snapshot(proxy, schema)
            p1 = pg_snapshot(proxy, schema)  # an idle window of the same length
            idle = pg_delta(p1, p0, 1)
            r["idle_window_12s"] = idle
            cookies = []
            timed(f"{variant}: logins", a.logins, lambda i: cookies.append(s.login(user)))
            p2 = pg_snapshot(proxy, schema)
            r["per_login"] = pg_delta(p2, p1, a.logins, idle)
            timed(f"{variant}: checks", a.checks, lambda i: s.check(cookies[i % len(cookies)]))
            p3 = pg_snapshot(proxy, schema)
            r["per_check"] = pg_delta(p3, p2, a.checks, idle)
            r["logins"], r["checks"] = a.logins, a.checks
            results[variant] = r
            s.stop()
            servers.remove(s)
    finally:
        for s in servers:
            s.stop()
        psql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        left = psql(f"SELECT count(*) FROM pg_namespace WHERE nspname = '{schema}'").strip()
        keys = scan(prefix + "*")
        for i in range(0, len(keys), 500):
            redis("DEL", *keys[i:i + 500])
        log(f"# cleanup: dropped schema {schema} (left: {left}); deleted {len(keys)} Redis keys")
        shutil.rmtree(data_dir, ignore_errors=True)
    print(json.dumps(results, indent=2))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["redis", "postgres"])
    p.add_argument("--logins", type=int, default=1000)
    p.add_argument("--checks", type=int, default=2000)
    p.add_argument("--users", type=int, default=500)
    p.add_argument("--touches", type=int, default=15)
    a = p.parse_args()
    {"redis": run_redis, "postgres": run_postgres}[a.what](a)


if __name__ == "__main__":
    main()
