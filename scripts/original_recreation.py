#!/usr/bin/env python3
"""A re-creation of the original Python system, for side-by-side measurements (scripts/bench.sh).

The original (a course assignment, see ../shared/original/NOTES.md) is not part of this repository
and its code is not copied here. This file re-creates, from its documented design, the behaviour
that decides its speed and memory:

* its client's arithmetic, as per-term Python loops: the sum of the evens and the sum of the odds of
  [a, b] (one loop each, testing every integer's parity), and its π: the original client actually
  sends a trapezoid-rule integral of 4/(1+x^2) over [0, 1] with 10,000 points (see src/legacy.rs,
  `original_trapezoid`), the same value for every interval. The baseline *kernel* we compare
  piswarm's against is the naive per-term Leibniz loop `pi += 4*((-1)**n/(2*n+1))` that the
  assignment asks for, which is what a Python client of that style computes per term;
* its server: one OS thread per connection; the interval [k*1000, k*1000+999] from a shared
  counter (unlocked, as in the original); frames of a 256-byte header holding the body's length
  in ASCII digits padded with spaces, then the body, read with one recv for the header and one for
  the body; on every result, the result appended to an in-memory list, the whole list printed and
  the whole results file rewritten with `json.dump(..., indent=4)`; a goodbye answered with raw
  bytes; the listening socket's default backlog and its 15 s accept timeout;
* its client's session: connect, read the interval, compute, send `[R]<evens>,<odds>,<pi>`, send
  `!DESCONECTADO`, leave. One connection per result.

Sub-commands (all print one JSON object on stdout):

    kernel  [--terms N]                        per-term rates of the client's loops
    server  --dir D [--port P]                 the re-created server (prints go to stdout)
    throughput [--clients 64] [--seconds 5]    the server fed by concurrent re-created clients
    idle    [--count 2000]                     the server's memory with N idle connections

Only loopback traffic; everything is bounded in time.
"""

import argparse
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

HEADER = 256
FORMAT = "utf-8"
DISCONNECT = "!DESCONECTADO"
GOODBYE_REPLY = b"msg recebida corretamente"
CHUNK = 1000
TRAPEZOID_POINTS = 10_000


# ------------------------------------------------------------------------------------------------
# The client's arithmetic, in the original's style: one Python loop iteration per integer.
# ------------------------------------------------------------------------------------------------

def leibniz_naive(a, b):
    """4·Σ (−1)^n/(2n+1) over [a, b], one term per iteration (the baseline kernel)."""
    pi = 0.0
    for n in range(a, b + 1):
        pi += 4 * ((-1) ** n / (2 * n + 1))
    return pi


def sum_of_evens(a, b):
    total = 0
    for n in range(a, b + 1):
        if n % 2 == 0:
            total += n
    return total


def sum_of_odds(a, b):
    total = 0
    for n in range(a, b + 1):
        if n % 2 != 0:
            total += n
    return total


def trapezoid_pi(points=TRAPEZOID_POINTS):
    """What the original client really sent as π: the trapezoid rule for ∫₀¹ 4/(1+x²) dx."""
    def f(x):
        return 4 / (1 + x ** 2)
    h = 1 / points
    s = f(0) + f(1)
    for i in range(1, points):
        s += 2 * f(i * h)
    return (h / 2) * s


def timed(fn, *args):
    t0 = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - t0


def cmd_kernel(args):
    n = int(float(args.terms))
    # Warm-up (bytecode caches, allocator), then one timed pass per loop.
    leibniz_naive(0, 10_000)
    pi, t_pi = timed(leibniz_naive, 0, n - 1)
    ev, t_ev = timed(sum_of_evens, 0, n - 1)
    od, t_od = timed(sum_of_odds, 0, n - 1)
    reps = 20
    _, t_tr = timed(lambda: [trapezoid_pi() for _ in range(reps)])
    print(json.dumps({
        "python": sys.version.split()[0],
        "terms": n,
        "leibniz_naive": {"pi": pi, "seconds": t_pi, "terms_per_s": n / t_pi},
        "sum_of_evens": {"value": str(ev), "seconds": t_ev, "terms_per_s": n / t_ev},
        "sum_of_odds": {"value": str(od), "seconds": t_od, "terms_per_s": n / t_od},
        # Per result the original client ran both sum loops over 1000 integers and this.
        "trapezoid_10000_points": {"pi": trapezoid_pi(), "seconds_per_call": t_tr / reps},
        "original_client_work_per_result_s":
            (t_ev + t_od) / n * CHUNK + t_tr / reps,
    }))


# ------------------------------------------------------------------------------------------------
# Framing: a 256-byte header with the body's length in ASCII digits, padded with spaces.
# ------------------------------------------------------------------------------------------------

def send_frame(conn, text):
    body = text.encode(FORMAT)
    header = str(len(body)).encode(FORMAT)
    header += b" " * (HEADER - len(header))
    conn.send(header)
    conn.send(body)


def recv_frame(conn):
    """One recv for the header, one for the body, as the original did ('' when the peer left)."""
    header = conn.recv(HEADER).decode(FORMAT)
    if not header:
        return ""
    length = int(header)
    return conn.recv(length).decode(FORMAT)


# ------------------------------------------------------------------------------------------------
# The server.
# ------------------------------------------------------------------------------------------------

class RecreatedServer:
    def __init__(self, directory, port):
        self.results_path = os.path.join(directory, "results.json")
        self.final_path = os.path.join(directory, "finalResult.json")
        self.results = []
        self.client_counter = 0
        self.running = True
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(15)  # the original stopped after 15 s without a new connection

    def serve(self, port_file):
        self.sock.listen()  # Python's default backlog, as in the original
        with open(port_file + ".tmp", "w") as f:
            f.write(str(self.sock.getsockname()[1]))
        os.replace(port_file + ".tmp", port_file)
        print(f"[AGUARDANDO] listening on {self.sock.getsockname()}", flush=True)
        while self.running:
            try:
                conn, addr = self.sock.accept()
            except socket.timeout:
                print("[ENCERRANDO] idle for 15 s", flush=True)
                self.final_result()
                self.running = False
                break
            threading.Thread(target=self.handle_client, args=(conn, addr)).start()
            print(f"[CONEXÕES ATIVAS] {threading.active_count() - 1}")

    def handle_client(self, conn, addr):
        print(f"[NOVA CONEXÃO] {addr}")
        start = self.client_counter * CHUNK
        send_frame(conn, f"[{start}, {start + CHUNK - 1}]")
        self.client_counter += 1
        connected = True
        while connected:
            message = recv_frame(conn)
            if message == "":
                break  # (the original spun here forever on a closed connection)
            if message.startswith("[R]"):
                evens, odds, pi = message[3:].split(",")
                self.results.append({
                    "timestamp": time.strftime("%d/%m/%Y %H:%M:%S"),
                    "cliente": self.client_counter,
                    "soma_pares": evens,
                    "soma_impares": odds,
                    "pi": pi,
                })
                # The whole file, rewritten on every result; the whole list, printed.
                with open(self.results_path, "w") as f:
                    json.dump(self.results, f, indent=4)
                print(f"[RESULTADOS] {self.results}")
            if message == DISCONNECT:
                connected = False
                conn.send(GOODBYE_REPLY)
        conn.close()

    def final_result(self):
        total = {"soma_pares": 0, "soma_impares": 0, "pi": 0}
        for r in self.results:
            total["soma_pares"] += int(r["soma_pares"])
            total["soma_impares"] += int(r["soma_impares"])
            total["pi"] += float(r["pi"])
        with open(self.final_path, "w") as f:
            json.dump(total, f, indent=4)


def cmd_server(args):
    server = RecreatedServer(args.dir, args.port)
    server.serve(os.path.join(args.dir, "port"))


def start_server(directory):
    """Starts the re-created server as a child process; returns (process, port)."""
    port_file = os.path.join(directory, "port")
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "server", "--dir", directory],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while not os.path.exists(port_file):
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("the re-created server did not start")
        time.sleep(0.01)
    with open(port_file) as f:
        return proc, int(f.read())


def stop_server(proc):
    proc.kill()
    proc.wait(timeout=10)


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def threads_of(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------------------
# Clients.
# ------------------------------------------------------------------------------------------------

def client_session(port, work):
    """One original client: connect, take an interval, compute, report, say goodbye.

    Returns True once the server has answered the goodbye, i.e. after it has stored the result.
    """
    conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        conn.connect(("127.0.0.1", port))
        interval = recv_frame(conn)
        a, b = (int(x) for x in interval.strip("[]").split(","))
        if work == "original":
            evens, odds, pi = sum_of_evens(a, b), sum_of_odds(a, b), trapezoid_pi()
        else:
            # Light client: the same message, from closed forms and a precomputed π, so that
            # the server alone is measured (as piswarm's own coordinator bench does).
            evens = sum(range(a + a % 2, b + 1, 2))
            odds = sum(range(a + 1 - a % 2, b + 1, 2))
            pi = LIGHT_PI
        send_frame(conn, f"[R]{evens},{odds},{pi}")
        send_frame(conn, DISCONNECT)
        return conn.recv(len(GOODBYE_REPLY)) == GOODBYE_REPLY
    except OSError:
        return False
    finally:
        conn.close()


LIGHT_PI = None


def client_process(port, threads, work, start_at, stop_at, queue):
    """`threads` client threads, each running sessions back to back until `stop_at`.

    Reports the completion times (relative to start_at) of every session it finished.
    """
    global LIGHT_PI
    LIGHT_PI = trapezoid_pi()
    done = []
    failed = [0]
    lock = threading.Lock()

    def loop():
        mine = []
        while time.time() < stop_at:
            if client_session(port, work):
                mine.append(time.time() - start_at)
            else:
                with lock:
                    failed[0] += 1
        with lock:
            done.extend(mine)

    while time.time() < start_at:
        time.sleep(0.001)
    ts = [threading.Thread(target=loop) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    queue.put((done, failed[0]))


def cmd_throughput(args):
    procs = max(1, min(args.processes, args.clients))
    per = [args.clients // procs + (1 if i < args.clients % procs else 0) for i in range(procs)]
    with tempfile.TemporaryDirectory(prefix="original-recreation-") as d:
        server, port = start_server(d)
        try:
            start_at = time.time() + 0.5
            stop_at = start_at + args.warmup + args.seconds
            queue = mp.Queue()
            children = [mp.Process(target=client_process,
                                   args=(port, n, args.work, start_at, stop_at, queue))
                        for n in per if n > 0]
            for c in children:
                c.start()
            times, failed = [], 0
            for _ in children:
                t, f = queue.get(timeout=args.warmup + args.seconds + 120)
                times.extend(t)
                failed += f
            for c in children:
                c.join(timeout=30)
            results_file_bytes = os.path.getsize(os.path.join(d, "results.json"))
        finally:
            stop_server(server)
    lo, hi = args.warmup, args.warmup + args.seconds
    measured = [t for t in times if lo <= t < hi]
    per_second = [sum(1 for t in measured if lo + s <= t < lo + s + 1)
                  for s in range(int(args.seconds))]
    print(json.dumps({
        "what": "re-created original server, thread per client, results file rewritten per result",
        "client_work": args.work,
        "clients": args.clients,
        "client_processes": len(children),
        "chunk": CHUNK,
        "warmup_s": args.warmup,
        "seconds": args.seconds,
        "results": len(measured),
        "results_per_s": len(measured) / args.seconds,
        "results_per_s_each_second": per_second,
        "results_stored_in_total": len(times),
        "results_file_bytes_at_end": results_file_bytes,
        "failed_sessions": failed,
    }))


def cmd_idle(args):
    with tempfile.TemporaryDirectory(prefix="original-recreation-") as d:
        server, port = start_server(d)
        held = []
        try:
            time.sleep(0.3)
            baseline = rss_bytes(server.pid)
            deadline = time.time() + args.timeout
            for _ in range(args.count):
                if time.time() > deadline:
                    break
                conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                conn.settimeout(10)
                conn.connect(("127.0.0.1", port))
                recv_frame(conn)  # the interval: the server's thread for it is now waiting
                held.append(conn)
            time.sleep(1.0)
            cpu0, t0 = cpu_seconds(server.pid), time.time()
            time.sleep(2.0)
            idle_cpu = (cpu_seconds(server.pid) - cpu0) / (time.time() - t0) * 100
            rss, threads = rss_bytes(server.pid), threads_of(server.pid)
        finally:
            for c in held:
                c.close()
            stop_server(server)
    n = len(held)
    print(json.dumps({
        "what": "re-created original server holding idle connections (one thread each)",
        "connections": n,
        "rss_bytes": rss,
        "baseline_rss_bytes": baseline,
        "bytes_per_connection": (rss - baseline) / max(n, 1),
        "server_threads": threads,
        "idle_cpu_percent": idle_cpu,
    }))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("kernel")
    k.add_argument("--terms", default="2e7")
    s = sub.add_parser("server")
    s.add_argument("--dir", required=True)
    s.add_argument("--port", type=int, default=0)
    t = sub.add_parser("throughput")
    t.add_argument("--clients", type=int, default=64)
    t.add_argument("--processes", type=int, default=4, help="client processes sharing the clients")
    t.add_argument("--seconds", type=float, default=5)
    t.add_argument("--warmup", type=float, default=0.5)
    t.add_argument("--work", choices=["light", "original"], default="light",
                   help="light: closed-form sums, precomputed π; original: the client's loops")
    i = sub.add_parser("idle")
    i.add_argument("--count", type=int, default=2000)
    i.add_argument("--timeout", type=float, default=60, help="stop opening connections after this")
    args = p.parse_args()
    {"kernel": cmd_kernel, "server": cmd_server, "throughput": cmd_throughput,
     "idle": cmd_idle}[args.cmd](args)


if __name__ == "__main__":
    main()
