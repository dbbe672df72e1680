#!/usr/bin/env python3
"""Runs three scenarios against any build of `threadline demo` (this one or an older
one: only flags every version has are used) and prints what happened, so two builds
can be compared with the same client:

  compare.py BINARY embedded-sigint      64 clients for 6 s, then SIGINT under load:
                                         HTTP 200 answers vs parcels shipped
  compare.py BINARY nats-outage [ARGS]   its own nats-server (port of its own), 5
                                         orders, SIGKILL the server, 16 orders while it
                                         is down, restart it: what the 16 were told,
                                         and how many orders shipped in all
  compare.py BINARY hostile N            N refused forms with 4 KB x-tenant-id and
                                         tl-field-user.id over 200 correlation ids:
                                         the demo's RSS before and after

ARGS are passed to the demo (e.g. `--queue q` for builds that have it). Loopback only.
"""
import http.client, json, os, shutil, signal, socket, subprocess, sys, threading, time

BIN = sys.argv[1]
MODE = sys.argv[2]


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def start_demo(extra):
    sp, wp = free_port(), free_port()
    p = subprocess.Popen([BIN, "demo", "--store-addr", f"127.0.0.1:{sp}", "--warehouse-addr", f"127.0.0.1:{wp}",
                          "--log-format", "json"] + extra, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines = []
    def reader():
        for l in p.stdout:
            lines.append(l)
    t = threading.Thread(target=reader, daemon=True); t.start()
    for _ in range(200):
        if any("order form" in l for l in lines): break
        time.sleep(0.05)
    return p, sp, lines, t


def post(port, body, headers=None):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        h = {"content-type": "application/x-www-form-urlencoded", "accept": "application/json", "connection": "close"}
        h.update(headers or {})
        c.request("POST", "/orders", body, h)
        r = c.getresponse(); data = r.read(); c.close()
        return r.status, data
    except Exception as e:
        return None, str(e).encode()


def load(port, conc, stop, out):
    def w():
        while not stop.is_set():
            st, data = post(port, "item=Kettle&quantity=1&tenant=acme")
            if st is None:
                break
            out.append((st, data))
    ts = [threading.Thread(target=w) for _ in range(conc)]
    for t in ts: t.start()
    return ts


def events(lines):
    out = []
    for l in lines:
        if l.startswith("{"):
            try: out.append(json.loads(l))
            except Exception: pass
    return out


if MODE == "embedded-sigint":
    p, port, lines, rt = start_demo([])
    stop = threading.Event(); out = []
    ts = load(port, 64, stop, out)
    time.sleep(6)
    p.send_signal(signal.SIGINT)
    p.wait(timeout=120); stop.set()
    for t in ts: t.join()
    rt.join(timeout=5)
    ok = sum(1 for s, _ in out if s == 200)
    shipped = sum(1 for e in events(lines) if e.get("message") == "parcel packed and handed to the carrier")
    print(f"embedded: HTTP 200 = {ok}, shipped = {shipped}, accepted but never shipped = {ok - shipped}")
    print("summary:", [l.strip() for l in lines if l.startswith("threadline demo:")])

elif MODE == "nats-outage":
    nport = free_port(); sd = f"/tmp/verify-nats-{nport}"
    srv = subprocess.Popen(["/usr/sbin/nats-server", "-a", "127.0.0.1", "-p", str(nport), "-js", "-sd", sd],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(1)
    p, port, lines, rt = start_demo(["--broker", f"nats://127.0.0.1:{nport}"] + sys.argv[3:])
    res = []
    for i in range(5): res.append(post(port, "item=Kettle&quantity=1&tenant=acme"))
    os.killpg(srv.pid, signal.SIGKILL); srv.wait()
    time.sleep(0.5)
    during = []
    t0 = time.time()
    def place(i):
        during.append(post(port, "item=Kettle&quantity=1&tenant=acme", {"idempotency-key": f"k{i}-{nport}"}))
    ths = [threading.Thread(target=place, args=(i,)) for i in range(16)]
    for t in ths: t.start()
    time.sleep(4)
    srv = subprocess.Popen(["/usr/sbin/nats-server", "-a", "127.0.0.1", "-p", str(nport), "-js", "-sd", sd],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    for t in ths: t.join()
    time.sleep(6)
    p.send_signal(signal.SIGINT); p.wait(timeout=60); rt.join(timeout=5)
    os.killpg(srv.pid, signal.SIGKILL)
    srv.wait()
    shutil.rmtree(sd, ignore_errors=True)
    ev = events(lines)
    told = {}
    for st, _ in during: told[st] = told.get(st, 0) + 1
    ok = sum(1 for st, _ in res + during if st == 200)
    shipped = sum(1 for e in ev if e.get("message") == "parcel packed and handed to the carrier")
    print(f"nats outage: answers while the server was down {told}; HTTP 200 in all {ok}; "
          f"shipped {shipped}; shipped without a 200 {shipped - ok}")
    print("summary:", [l.strip() for l in lines if l.startswith("threadline demo:")])

elif MODE == "hostile":
    n = int(sys.argv[3])
    p, port, lines, rt = start_demo(["--log-level", "warn"])
    def rss():
        st = open(f"/proc/{p.pid}/status").read()
        f = lambda k: int([l for l in st.splitlines() if l.startswith(k)][0].split()[1])
        return f("VmRSS:"), f("VmHWM:")
    t = "t" * 4000; u = "u" * 4000
    before = rss()
    idx = [0]; lock = threading.Lock()
    def w():
        while True:
            with lock:
                i = idx[0]; idx[0] += 1
            if i >= n: return
            post(port, "item=Kettle&quantity=lots&tenant=acme",
                 {"x-correlation-id": f"hostile-{i % 200}", "x-tenant-id": t, "tl-field-user.id": u})
    ts = [threading.Thread(target=w) for _ in range(32)]
    t0 = time.time()
    for x in ts: x.start()
    for x in ts: x.join()
    after = rss()
    print(f"hostile: {n} requests in {time.time()-t0:.1f}s; RSS before {before[0]} KiB, after {after[0]} KiB, peak {after[1]} KiB")
    lines.clear()
    p.send_signal(signal.SIGINT); p.wait(timeout=60)
