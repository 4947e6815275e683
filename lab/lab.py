"""Helpers for the freezer-dr lab scripts (lab/up.sh, lab/demo.sh), run with the lab venv's python.

    lab.py udp-ports N                  N free UDP ports on 127.0.0.1 (one per BMC)
    lab.py setup                        lets the lab admin boot servers in the demo and other projects
    lab.py boot PROJECT:HOST:COUNT ...  boots servers on exact hosts, waits until ACTIVE, records them
    lab.py wait-service HOST STATE SECONDS   until nova-compute on HOST reads STATE (up/down)
    lab.py instances                    every recorded server: project, host now, status, evacuations
    lab.py services                     the nova-compute services
    lab.py mails [--operators]          what each mailbox received (users, then the operators)
    lab.py follow BIN SINCE_MS recovered|restored|storm HOST SECONDS
                                        prints the journal's history, the mails and the BMCs' actions as
                                        they happen, until the condition holds
    lab.py phases BIN HOST CRASH_MS POWERON_MS   the recovery of HOST per phase (history, mails, BMC)

Settings come from LAB_DIR/lab.env (sourced by the caller). Servers booted by `boot` are recorded in
LAB_DIR/servers.json.
"""
import email
import email.policy
import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime

MV = {"OpenStack-API-Version": "compute 2.74"}


def udp_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks))
    for s in socks:
        s.close()


def session(project="admin"):
    from keystoneauth1 import session as ks_session
    from keystoneauth1.identity import v3

    auth = v3.Password(
        auth_url=os.environ["OS_AUTH_URL"],
        username="admin",
        password=os.environ["OS_PASSWORD"],
        project_name=project,
        user_domain_name="Default",
        project_domain_name="Default",
    )
    return ks_session.Session(auth=auth)


def nova_url():
    return os.environ["LAB_NOVA_URL"]


def keystone_url():
    return os.environ["OS_AUTH_URL"].rstrip("/")


def setup():
    s = session()
    ks = keystone_url()
    admin_role = s.get(ks + "/roles?name=admin").json()["roles"][0]["id"]
    admin_user = s.get(ks + "/users?name=admin").json()["users"][0]["id"]
    for project in ("demo", "other"):
        pid = s.get(ks + "/projects?name=%s" % project).json()["projects"][0]["id"]
        s.put(ks + "/projects/%s/users/%s/roles/%s" % (pid, admin_user, admin_role))


def servers_file():
    return os.path.join(os.environ["LAB_DIR"], "servers.json")


def load_servers():
    try:
        with open(servers_file()) as f:
            return json.load(f)
    except FileNotFoundError:
        return []


def boot(specs):
    known = load_servers()
    booted = []
    sessions = {}
    for spec in specs:
        project, host, count = spec.split(":")
        s = sessions.setdefault(project, session(project))
        for _ in range(int(count)):
            n = sum(1 for x in known + booted if x["project_name"] == project) + 1
            name = "%s-vm%d" % (project, n)
            r = s.post(nova_url() + "/servers", headers=MV, json={"server": {
                "name": name, "imageRef": os.environ["LAB_IMAGE_ID"], "flavorRef": "lab-tiny",
                "networks": "none", "host": host}})
            sid = r.json()["server"]["id"]
            booted.append({"id": sid, "name": name, "project_name": project, "host": host})
    admin = session()
    deadline = time.time() + 240
    for b in booted:
        while True:
            srv = admin.get(nova_url() + "/servers/" + b["id"], headers=MV).json()["server"]
            if srv["status"] == "ACTIVE":
                b["project_id"] = srv["tenant_id"]
                if srv["OS-EXT-SRV-ATTR:host"] != b["host"]:
                    sys.exit("%s booted on %s, not %s" % (b["name"], srv["OS-EXT-SRV-ATTR:host"], b["host"]))
                break
            if srv["status"] == "ERROR" or time.time() > deadline:
                sys.exit("server %s did not become ACTIVE: %s" % (b["name"], srv.get("fault", srv["status"])))
            time.sleep(0.5)
    with open(servers_file(), "w") as f:
        json.dump(known + booted, f, indent=1)
    for b in booted:
        print("  %-10s %-7s on %-9s %s" % (b["name"], b["project_name"], b["host"], b["id"]))


def service(s, host):
    svcs = s.get(nova_url() + "/os-services?binary=nova-compute&host=" + host, headers=MV).json()["services"]
    for svc in svcs:
        if svc["host"] == host:
            return svc
    sys.exit("no nova-compute service on %s" % host)


def wait_service(host, state, seconds):
    s = session()
    deadline = time.time() + float(seconds)
    while time.time() < deadline:
        if service(s, host)["state"] == state:
            return
        time.sleep(0.5)
    sys.exit("nova-compute on %s did not read %s within %ss" % (host, state, seconds))


def evacuations(s, sid):
    actions = s.get(nova_url() + "/servers/%s/os-instance-actions" % sid, headers=MV).json()
    return sum(1 for a in actions["instanceActions"] if a["action"] == "evacuate")


def instances():
    s = session()
    print("  %-10s %-7s %-9s %-9s %-8s %s" % ("server", "project", "booted on", "now on", "status", "evacuate calls"))
    for b in load_servers():
        srv = s.get(nova_url() + "/servers/" + b["id"], headers=MV).json()["server"]
        print("  %-10s %-7s %-9s %-9s %-8s %d" % (
            b["name"], b["project_name"], b["host"], srv["OS-EXT-SRV-ATTR:host"], srv["status"],
            evacuations(s, b["id"])))


def services():
    s = session()
    svcs = s.get(nova_url() + "/os-services?binary=nova-compute", headers=MV).json()["services"]
    for svc in sorted(svcs, key=lambda x: x["host"]):
        print("  %-9s state=%-4s status=%-8s forced_down=%-5s %s" % (
            svc["host"], svc["state"], svc["status"], str(svc["forced_down"]).lower(),
            svc.get("disabled_reason") or ""))


def read_maildir():
    root = os.path.join(os.environ["LAB_DIR"], "maildir", "new")
    out = []
    for name in os.listdir(root) if os.path.isdir(root) else []:
        with open(os.path.join(root, name), "rb") as f:
            msg = email.message_from_binary_file(f, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        out.append({
            "file": name,
            "rcpt": msg.get("X-RcptTo", ""),
            "to": msg.get("To", ""),
            "cc": msg.get("Cc", ""),
            "subject": str(msg.get("Subject", "")),
            "message_id": msg.get("Message-ID", ""),
            "date": email.utils.parsedate_to_datetime(msg["Date"]) if msg["Date"] else None,
            "text": body.get_content() if body is not None else "",
        })
    out.sort(key=lambda m: (m["date"] or datetime.min, m["file"]))
    return out


def mails(operators_only=False):
    """Every mail once (users' first, then the operators'), with who received it."""
    msgs = read_maildir()
    ops = set(os.environ.get("LAB_OPERATORS", "").split())
    by_id = {}
    for m in msgs:
        by_id.setdefault(m["message_id"], []).append(m)
    order = sorted(by_id.values(), key=lambda ms: (ms[0]["rcpt"] in ops, ms[0]["date"] or datetime.min))
    for copies in order:
        m = copies[0]
        to_ops = m["rcpt"] in ops
        if operators_only and not to_ops:
            continue
        print("=== %s" % m["subject"])
        print("    received by: %s (%s)" % (", ".join(sorted(c["rcpt"] for c in copies)),
                                         "operators" if to_ops else "users"))
        print("    Message-ID: %s" % m["message_id"])
        for line in m["text"].strip().splitlines():
            print("    | " + line)
    per_rcpt = {}
    for m in msgs:
        per_rcpt[m["rcpt"]] = per_rcpt.get(m["rcpt"], 0) + 1
    dup = len(msgs) - len({(m["message_id"], m["rcpt"]) for m in msgs})
    print("Mails per recipient: %s" % ", ".join("%s %d" % kv for kv in sorted(per_rcpt.items())))
    print("(%d mails in %s/maildir/new, %d received twice by the same recipient)" % (
        len(msgs), os.environ["LAB_DIR"], dup))


def history(binary):
    out = subprocess.run([binary, "history", "--json", "--limit", "100000"], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("freezer-dr history failed: %s" % out.stderr)
    return json.loads(out.stdout or "[]")


def iso_ms(text):
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def log_events(since_ms):
    """Deliveries from the daemon's log, and what each BMC's chassis did (the ground truth of a fence)."""
    out = []
    log = os.path.join(os.environ["LAB_DIR"], "logs", "freezer-dr.log")
    if os.path.exists(log):
        with open(log, errors="replace") as f:
            for line in f:
                if "mail accepted" not in line:
                    continue
                ms = iso_ms(line.split()[0])
                to = line.rsplit("to=", 1)[-1].strip()
                mail = line.split("mail=", 1)[-1].split()[0] if "mail=" in line else ""
                kind = "operators" if mail == "operators" else "users of project " + mail.split(".", 1)[-1]
                out.append({"at": ms, "host": None, "instance": None, "what": "mail to %s accepted (%s)" % (to, kind),
                            "src": "mail"})
    for h in os.environ.get("LAB_COMPUTES", "").split():
        clog = os.path.join(os.environ["LAB_DIR"], "bmc", h, "chassis.log")
        if os.path.exists(clog):
            with open(clog) as f:
                for line in f:
                    if " power " not in line:
                        continue
                    ts, what = line.rstrip().split(" ", 1)
                    out.append({"at": iso_ms(ts), "host": h, "instance": None, "what": "BMC: " + what, "src": "bmc"})
    return [e for e in out if e["at"] >= since_ms]


def show(e, since_ms):
    subject = " ".join(x for x in (e.get("host"), e.get("instance")) if x)
    what = e["what"]
    if len(what) > 220:
        what = what[:217] + "..."
    print("  +%6.1fs  %-9s %s" % ((e["at"] - since_ms) / 1000.0, subject, what), flush=True)


def done(until, host, events):
    texts = [(e.get("host"), e["what"]) for e in events]
    if until == "recovered":
        finished = any(h == host and "running elsewhere" in w for h, w in texts)
        ops = set(os.environ.get("LAB_OPERATORS", "").split())
        mailed = sum(1 for m in read_maildir() if m["rcpt"] in ops and "recovery finished: " + host in m["subject"])
        return finished and mailed >= len(ops)
    if until == "restored":
        return any(h == host and w.startswith("returned to service") for h, w in texts)
    if until == "storm":
        return any(w.startswith("storm:") for _, w in texts)
    sys.exit("unknown condition %s" % until)


def follow(binary, since_ms, until, host, seconds):
    """Prints the recovery as it happens until UNTIL (recovered, restored, storm) holds for HOST."""
    since_ms = int(since_ms)
    seen = set()
    deadline = time.time() + float(seconds)
    while True:
        events = [dict(e, src="journal") for e in history(binary) if e["at"] >= since_ms]
        fresh = []
        for e in events + log_events(since_ms):
            key = (e["at"], e.get("host"), e.get("instance"), e["what"])
            if key not in seen:
                seen.add(key)
                fresh.append(e)
        for e in sorted(fresh, key=lambda e: e["at"]):
            show(e, since_ms)
        if done(until, host, events):
            return
        if time.time() > deadline:
            sys.exit("gave up after %ss waiting for %s of %s" % (seconds, until, host))
        time.sleep(0.5)


PHASES = [
    ("detection", lambda w: w.startswith("observed down")),
    ("guard", lambda w: w.startswith("recovery started") or w.startswith("storm")),
    ("fence", lambda w: "power-off" in w or w.startswith("confirmed off") or w.startswith("BMC: power off")),
    ("isolate", lambda w: w.startswith("isolated")),
    ("return to service", lambda w: "return" in w or w.startswith("reports up") or w.startswith("BMC: power on")),
    ("evacuate", lambda w: "instance" in w or "evacuation" in w or " on " in w),
    ("notify", lambda w: w.startswith("mail to")),
]


def phases(binary, host, crash_ms, poweron_ms):
    """The recovery of HOST per phase: each phase's events, when it ended and how long it took."""
    crash_ms, poweron_ms = int(crash_ms), int(poweron_ms)
    events = [e for e in history(binary) + log_events(crash_ms) if e["at"] >= crash_ms and e.get("host") in (host, None)]
    events.sort(key=lambda e: e["at"])
    rows = []
    for e in events:
        w = e["what"]
        name = next((n for n, rule in PHASES if rule(w)), "other")
        if name == "notify" and e["at"] >= poweron_ms:
            name = "return to service"
        rows.append((name, e))
    span = {}
    current = None
    for name, e in rows:
        if name != current:
            print("  [%s]" % name)
            current = name
        show(e, crash_ms)
        first, _ = span.get(name, (e["at"], e["at"]))
        span[name] = (first, e["at"])
    print()
    print("  %-18s %10s %10s %9s" % ("phase", "from", "to", "took"))
    prev = crash_ms
    order = ["detection", "guard", "fence", "isolate", "evacuate", "notify", "return to service", "other"]
    for name in order:
        if name not in span:
            continue
        first, last = span[name]
        start = poweron_ms if name == "return to service" else min(first, prev) if name == "other" else prev
        print("  %-18s %+9.1fs %+9.1fs %8.1fs" % (
            name, (start - crash_ms) / 1000.0, (last - crash_ms) / 1000.0, (last - start) / 1000.0))
        if name not in ("return to service", "other"):
            prev = max(prev, last) if name != "notify" else prev
    print("  (detection counts from the crash, including Nova's own service_down_time; return to service")
    print("   from the power-on at +%.1fs)" % ((poweron_ms - crash_ms) / 1000.0))


def main():
    cmd = sys.argv[1]
    args = sys.argv[2:]
    if cmd == "udp-ports":
        udp_ports(int(args[0]))
    elif cmd == "setup":
        setup()
    elif cmd == "boot":
        boot(args)
    elif cmd == "wait-service":
        wait_service(*args)
    elif cmd == "instances":
        instances()
    elif cmd == "services":
        services()
    elif cmd == "mails":
        mails("--operators" in args)
    elif cmd == "follow":
        follow(*args)
    elif cmd == "phases":
        phases(*args)
    else:
        sys.exit("unknown command %s" % cmd)


if __name__ == "__main__":
    main()
