"""Helpers for the freezer-dr lab scripts (lab/up.sh, lab/demo.sh), run with the lab venv's python.

    lab.py udp-ports N                  N free UDP ports on 127.0.0.1 (one per BMC)
    lab.py setup                        lets the lab admin boot servers in the demo and other projects
    lab.py boot PROJECT:HOST:COUNT ...  boots servers on exact hosts, waits until ACTIVE, records them
    lab.py wait-service HOST STATE SECONDS   until nova-compute on HOST reads STATE (up/down)
    lab.py instances                    every recorded server: project, host now, status, evacuations
    lab.py services                     the nova-compute services
    lab.py mails [--operators]          what each mailbox received (users, then the operators)
    lab.py phases EVENTS.json CRASH_EPOCH   the recovery timeline per phase, from `freezer-dr history --json`

Settings come from LAB_DIR/lab.env (sourced by the caller). Servers booted by `boot` are recorded in
LAB_DIR/servers.json.
"""
import email
import email.policy
import json
import os
import socket
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
    msgs = read_maildir()
    ops = set(os.environ.get("LAB_OPERATORS", "").split())
    by_rcpt = {}
    for m in msgs:
        by_rcpt.setdefault(m["rcpt"], []).append(m)
    for rcpt in sorted(by_rcpt, key=lambda r: (r in ops, r)):
        if operators_only and rcpt not in ops:
            continue
        got = by_rcpt[rcpt]
        print("=== %s (%s): %d mail(s)" % (rcpt, "operator" if rcpt in ops else "user", len(got)))
        for m in got:
            print("--- Subject: %s" % m["subject"])
            print("    To: %s%s   Message-ID: %s" % (m["to"], ("   Cc: " + m["cc"]) if m["cc"] else "",
                                                  m["message_id"]))
            if rcpt not in ops:
                for line in m["text"].strip().splitlines():
                    print("    | " + line)
    dup = len(msgs) - len({(m["message_id"], m["rcpt"]) for m in msgs})
    print("(%d mails in %s/maildir, %d duplicate(s) by Message-ID and recipient)" % (
        len(msgs), os.environ["LAB_DIR"], dup))


def phases(events_file, crash_epoch):
    """Groups `freezer-dr history --json` lines into the recovery's phases, with their times."""
    with open(events_file) as f:
        events = json.load(f)
    crash = float(crash_epoch)

    def at(e):
        return datetime.fromisoformat(e["at"].replace("Z", "+00:00")).timestamp()

    rules = [
        ("detection", ("observed down",)),
        ("guard", ("storm", "down for the whole strike count", "paused")),
        ("fence", ("power", "fenc", "off")),
        ("isolate", ("isolat", "forced down", "disabled")),
        ("evacuate", ("evacuat", "instance", "listed", "rebuil", "active on", "running on")),
        ("notify", ("report", "mail", "notif", "deliver")),
        ("return to service", ("restor", "return", "repaired", "up again", "healthy")),
    ]
    rows = []
    for e in events:
        t = at(e)
        if t < crash - 1:
            continue
        what = e["what"].lower()
        phase = "other"
        for name, keys in rules:
            if any(k in what for k in keys):
                phase = name
                break
        rows.append((t, phase, e))
    last_phase = None
    start = {}
    end = {}
    for t, phase, e in rows:
        start.setdefault(phase, t)
        end[phase] = t
        if phase != last_phase:
            print("  [%s]" % phase)
            last_phase = phase
        subject = " ".join(x for x in (e.get("host"), e.get("instance")) if x)
        print("    +%6.1fs  %-9s %s" % (t - crash, subject, e["what"]))
    print()
    print("  %-18s %9s %9s %9s" % ("phase", "from", "to", "took"))
    for name, _ in rules + [("other", ())]:
        if name in start:
            print("  %-18s %+8.1fs %+8.1fs %8.1fs" % (
                name, start[name] - crash, end[name] - crash, end[name] - start[name]))


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
    elif cmd == "phases":
        phases(*args)
    else:
        sys.exit("unknown command %s" % cmd)


if __name__ == "__main__":
    main()
