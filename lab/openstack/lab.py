"""Helpers for lab/openstack/up.sh, run with the lab venv's python (keystoneauth1 is there).

    lab.py ports N                 N free TCP ports on 127.0.0.1
    lab.py wait-http URL SECONDS   until URL answers an HTTP status
    lab.py keystone-setup          service users, catalog, a demo project with users and a group
    lab.py nova-ready SECONDS      until every compute is up and schedulable; creates the flavor

Settings come from the environment written by up.sh (LAB_* and OS_* variables).
"""
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request


def ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks))
    for s in socks:
        s.close()


def wait_http(url, seconds):
    deadline = time.time() + seconds
    last = None
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=3)
            return
        except urllib.error.HTTPError:
            return
        except Exception as e:  # noqa: BLE001 - any failure means "not yet"
            last = e
            time.sleep(0.3)
    sys.exit("%s did not answer within %ss: %s" % (url, seconds, last))


def admin_session():
    from keystoneauth1 import session
    from keystoneauth1.identity import v3

    auth = v3.Password(
        auth_url=os.environ["OS_AUTH_URL"],
        username="admin",
        password=os.environ["OS_PASSWORD"],
        project_name="admin",
        user_domain_name="Default",
        project_domain_name="Default",
    )
    return session.Session(auth=auth)


class Keystone:
    def __init__(self, sess):
        self.s = sess
        self.url = os.environ["OS_AUTH_URL"].rstrip("/")

    def get(self, path):
        return self.s.get(self.url + path).json()

    def post(self, path, body):
        r = self.s.post(self.url + path, json=body)
        return r.json() if r.content else {}

    def put(self, path):
        self.s.put(self.url + path)

    def find_or_create(self, coll, key, name, body):
        found = self.get("/%s?name=%s" % (coll, name))[coll]
        if found:
            return found[0]["id"]
        return self.post("/" + coll, {key: dict(body, name=name)})[key]["id"]


def keystone_setup():
    ks = Keystone(admin_session())
    pw = os.environ["LAB_SERVICE_PASSWORD"]
    admin_role = ks.find_or_create("roles", "role", "admin", {})
    member_role = ks.find_or_create("roles", "role", "member", {})
    service = ks.find_or_create("projects", "project", "service", {"domain_id": "default"})
    for user in ("nova", "placement"):
        uid = ks.find_or_create(
            "users", "user", user, {"domain_id": "default", "password": pw})
        ks.put("/projects/%s/users/%s/roles/%s" % (service, uid, admin_role))
    for kind, port, suffix in (
        ("compute", os.environ["LAB_NOVA_PORT"], "/v2.1"),
        ("placement", os.environ["LAB_PLACEMENT_PORT"], ""),
    ):
        sid = ks.find_or_create("services", "service", kind, {"type": kind})
        for iface in ("public", "internal", "admin"):
            ks.post("/endpoints", {"endpoint": {
                "service_id": sid, "interface": iface, "region_id": "RegionOne",
                "url": "http://127.0.0.1:%s%s" % (port, suffix)}})
    # A tenant with two direct members (one without an email) and a group member, for the directory.
    demo = ks.find_or_create("projects", "project", "demo", {"domain_id": "default"})
    alice = ks.find_or_create("users", "user", "alice", {
        "domain_id": "default", "password": pw, "email": "alice@example.org"})
    carol = ks.find_or_create("users", "user", "carol", {"domain_id": "default", "password": pw})
    bob = ks.find_or_create("users", "user", "bob", {
        "domain_id": "default", "password": pw, "email": "bob@example.org"})
    ops = ks.find_or_create("groups", "group", "demo-ops", {"domain_id": "default"})
    ks.put("/groups/%s/users/%s" % (ops, bob))
    ks.put("/projects/%s/users/%s/roles/%s" % (demo, alice, member_role))
    ks.put("/projects/%s/users/%s/roles/%s" % (demo, carol, member_role))
    ks.put("/projects/%s/groups/%s/roles/%s" % (demo, ops, member_role))
    # Someone on another project, who must never be told about demo's instances.
    other = ks.find_or_create("projects", "project", "other", {"domain_id": "default"})
    dave = ks.find_or_create("users", "user", "dave", {
        "domain_id": "default", "password": pw, "email": "dave@example.org"})
    ks.put("/projects/%s/users/%s/roles/%s" % (other, dave, member_role))
    print("LAB_DEMO_PROJECT_ID=%s" % demo)
    print("LAB_OTHER_PROJECT_ID=%s" % other)


def started_at(pid):
    """Field 22 of /proc/PID/stat (the start time), counted after the command name; None once it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def dead(names):
    """Which of the services up.sh started (DIR/pids/NAME: "PID STARTTIME", as common.sh writes) are gone."""
    gone = []
    for name in names:
        try:
            with open(os.path.join(os.environ["LAB_DIR"], "pids", name)) as f:
                pid, start = f.read().split()
        except (OSError, ValueError):
            gone.append(name)
            continue
        if started_at(int(pid)) != start:
            gone.append(name)
    return gone


def nova_ready(seconds):
    sess = admin_session()
    computes = os.environ["LAB_COMPUTES"].split()
    # What must keep running for the computes to report: a dead one fails now, named, not after the timeout.
    needed = ["mariadb", "rabbitmq", "keystone", "placement-api", "nova-api", "nova-conductor",
              "nova-scheduler"] + ["nova-compute-" + h for h in computes]
    nova = "http://127.0.0.1:%s/v2.1" % os.environ["LAB_NOVA_PORT"]
    placement = "http://127.0.0.1:%s" % os.environ["LAB_PLACEMENT_PORT"]
    deadline = time.time() + seconds
    why = "nothing checked yet"
    while time.time() < deadline:
        gone = dead(needed)
        if gone:
            sys.exit("Nova cannot become ready: %s exited (%s)" % (", ".join(gone), why))
        try:
            svcs = sess.get(nova + "/os-services?binary=nova-compute",
                            headers={"OpenStack-API-Version": "compute 2.53"}).json()["services"]
            up = sorted(s["host"] for s in svcs if s["state"] == "up")
            if up != sorted(computes):
                why = "computes up: %s of %s" % (up, computes)
                time.sleep(1)
                continue
            cands = sess.get(
                placement + "/allocation_candidates?resources=VCPU:1,MEMORY_MB:64,DISK_GB:1",
                headers={"OpenStack-API-Version": "placement 1.10"},
                raise_exc=False)
            if cands.status_code != 200:
                why = "placement says %s" % cands.status_code
                time.sleep(1)
                continue
            n = len(cands.json().get("provider_summaries", {}))
            if n < len(computes):
                why = "placement has %d schedulable providers of %d" % (n, len(computes))
                time.sleep(1)
                continue
            # Every compute must be mapped to the cell before the scheduler may pick it.
            hyps = sess.get(nova + "/os-hypervisors", raise_exc=False)
            if hyps.status_code != 200 or len(hyps.json().get("hypervisors", [])) < len(computes):
                why = "hypervisors not all mapped yet"
                time.sleep(1)
                continue
            flavors = sess.get(nova + "/flavors").json()["flavors"]
            if not any(f["name"] == "lab.tiny" for f in flavors):
                sess.post(nova + "/flavors", json={"flavor": {
                    "name": "lab.tiny", "ram": 64, "vcpus": 1, "disk": 1, "id": "lab-tiny"}})
            return
        except Exception as e:  # noqa: BLE001 - not ready yet
            why = repr(e)
            time.sleep(1)
    sys.exit("Nova was not ready within %ss: %s" % (seconds, why))


def main():
    cmd = sys.argv[1]
    if cmd == "ports":
        ports(int(sys.argv[2]))
    elif cmd == "wait-http":
        wait_http(sys.argv[2], float(sys.argv[3]))
    elif cmd == "keystone-setup":
        keystone_setup()
    elif cmd == "nova-ready":
        nova_ready(float(sys.argv[2]))
    else:
        sys.exit("unknown command %s" % cmd)


if __name__ == "__main__":
    main()
