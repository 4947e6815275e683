#!/usr/bin/env bash
# Starts a real, minimal OpenStack control plane on 127.0.0.1 for freezer-dr's tests and demos: MariaDB and
# RabbitMQ (Debian, unprivileged, loopback/unix socket only), Keystone, Placement, nova-api (gunicorn),
# nova-conductor, nova-scheduler, Glance/Neutron stand-ins, and one nova-compute per host on Nova's fake
# virt driver. Installs what is missing first (install.sh). Prints the credentials and writes them to
# DIR/lab.env (shell) and DIR/clouds.yaml (cloud "freezer-dr-lab").
#
#   lab/openstack/up.sh [--dir DIR] [--computes "compute1 compute10 compute2"]
#   lab/openstack/compute.sh DIR kill|start HOST      # crash / repair one compute
#   lab/openstack/down.sh [--purge] DIR
#
# Environment: FREEZER_DR_LAB_VENV (default /opt/freezer-dr-lab/venv), LAB_READY_TIMEOUT (s, default 240).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"

LAB_DIR=""
COMPUTES="compute1 compute10 compute2"
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) LAB_DIR="$2"; shift 2 ;;
        --computes) COMPUTES="$2"; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$LAB_DIR" ] || LAB_DIR="$(mktemp -d /tmp/freezer-dr-lab.XXXXXX)"
mkdir -p "$LAB_DIR"
LAB_DIR="$(cd "$LAB_DIR" && pwd)"
LAB_VENV="${FREEZER_DR_LAB_VENV:-/opt/freezer-dr-lab/venv}"
READY_TIMEOUT="${LAB_READY_TIMEOUT:-240}"
export LAB_DIR LAB_VENV

"$HERE/install.sh" >/dev/null

. "$HERE/common.sh"
if [ -d "$LAB_DIR/pids" ] && [ -n "$(ls -A "$LAB_DIR/pids" 2>/dev/null)" ]; then
    echo "a lab already runs in $LAB_DIR (lab/openstack/down.sh $LAB_DIR first)" >&2
    exit 1
fi
mkdir -p "$LAB_DIR"/{logs,pids,shims,keystone,placement,nova,rabbitmq,lock}
PY="$LAB_VENV/bin/python"
ME="$(id -un)"
MEGROUP="$(id -gn)"

fail() {
    echo "lab: $*" >&2
    # The errors first (a CI log may keep only the head of this): the last error lines of every log, then
    # the last lines of each.
    echo "lab: errors in $LAB_DIR/logs and $LAB_DIR/rabbitmq/log:" >&2
    for f in "$LAB_DIR"/logs/*.log "$LAB_DIR"/rabbitmq/log/*.log; do
        [ -s "$f" ] || continue
        grep -E "ERROR|CRITICAL|Traceback|[Ee]rror:|crash|refused" "$f" | tail -n 4 | sed "s|^|$(basename "$f"): |" >&2 || true
    done
    echo "lab: logs in $LAB_DIR/logs; last lines:" >&2
    for f in "$LAB_DIR"/logs/*.log; do
        [ -e "$f" ] || continue
        echo "---- $(basename "$f")" >&2
        tail -n 15 "$f" >&2
    done
    "$HERE/down.sh" "$LAB_DIR" >/dev/null 2>&1 || true
    exit 1
}
trap 'fail "failed at line $LINENO"' ERR

read -r KEYSTONE_PORT PLACEMENT_PORT NOVA_PORT GLANCE_PORT NEUTRON_PORT RABBIT_PORT RABBIT_DIST EPMD_PORT \
    < <("$PY" "$HERE/lab.py" ports 8)
secret() { "$PY" -c 'import secrets; print(secrets.token_hex(12))'; }
ADMIN_PASSWORD="$(secret)"
SERVICE_PASSWORD="$(secret)"
DB_PASSWORD="$(secret)"
SOCK="$LAB_DIR/mysql.sock"
KS="http://127.0.0.1:$KEYSTONE_PORT/v3"

# ---- MariaDB: own datadir, unix socket only.
mariadb-install-db --no-defaults --datadir="$LAB_DIR/mysql" --user="$ME" --skip-test-db \
    --auth-root-authentication-method=socket >"$LAB_DIR/logs/mariadb-install.log" 2>&1
start mariadb /usr/sbin/mariadbd --no-defaults --datadir="$LAB_DIR/mysql" --socket="$SOCK" \
    --skip-networking --user="$ME" --pid-file="$LAB_DIR/mysql.pid" --max-connections=1000 \
    --innodb-buffer-pool-size=64M --innodb-flush-log-at-trx-commit=2 --skip-log-bin \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci

# ---- RabbitMQ: run the server script directly (Debian's wrapper su's to the rabbitmq user).
echo "[]." >"$LAB_DIR/rabbitmq/enabled_plugins"
start epmd /usr/bin/epmd -address 127.0.0.1 -port "$EPMD_PORT"
(
    export HOME="$LAB_DIR/rabbitmq"
    export RABBITMQ_NODENAME="lab$RABBIT_PORT@localhost"
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$RABBIT_PORT" RABBITMQ_DIST_PORT="$RABBIT_DIST"
    export ERL_EPMD_ADDRESS=127.0.0.1 ERL_EPMD_PORT="$EPMD_PORT"
    export RABBITMQ_MNESIA_BASE="$LAB_DIR/rabbitmq/mnesia" RABBITMQ_LOG_BASE="$LAB_DIR/rabbitmq/log"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$LAB_DIR/rabbitmq/enabled_plugins"
    export RABBITMQ_CONFIG_FILE="$LAB_DIR/rabbitmq/rabbitmq"
    export RABBITMQ_PID_FILE="$LAB_DIR/rabbitmq/pid"
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    : >"$LAB_DIR/rabbitmq/rabbitmq.conf"
    start rabbitmq /usr/lib/rabbitmq/bin/rabbitmq-server
)
TRANSPORT="rabbit://guest:guest@127.0.0.1:$RABBIT_PORT/"

# ---- Keystone (sqlite, fernet tokens), configured while the others start.
cat >"$LAB_DIR/keystone/keystone.conf" <<EOF
[DEFAULT]
use_stderr = true
[database]
connection = sqlite:///$LAB_DIR/keystone/keystone.db
[token]
provider = fernet
expiration = ${LAB_TOKEN_EXPIRATION:-3600}
[fernet_tokens]
key_repository = $LAB_DIR/keystone/fernet-keys
[fernet_receipts]
key_repository = $LAB_DIR/keystone/fernet-keys
[credential]
key_repository = $LAB_DIR/keystone/credential-keys
EOF
KM=("$LAB_VENV/bin/keystone-manage" --config-file "$LAB_DIR/keystone/keystone.conf")
(
    "${KM[@]}" db_sync
    "${KM[@]}" fernet_setup --keystone-user "$ME" --keystone-group "$MEGROUP"
    "${KM[@]}" credential_setup --keystone-user "$ME" --keystone-group "$MEGROUP"
    "${KM[@]}" bootstrap --bootstrap-password "$ADMIN_PASSWORD" \
        --bootstrap-admin-url "$KS" --bootstrap-internal-url "$KS" --bootstrap-public-url "$KS" \
        --bootstrap-region-id RegionOne
) >"$LAB_DIR/logs/keystone-manage.log" 2>&1 &
KEYSTONE_SETUP=$!

# ---- gunicorn shims: the apps parse sys.argv with oslo.config, which must not see gunicorn's.
for app in keystone:keystone.wsgi.api placement:placement.wsgi.api nova:nova.wsgi.osapi_compute; do
    printf 'import sys\nsys.argv = sys.argv[:1]\nfrom %s import application  # noqa: E402,F401\n' \
        "${app#*:}" >"$LAB_DIR/shims/${app%%:*}_app.py"
done
gunicorn() {
    local name="$1" port="$2"
    start "$name" "$LAB_VENV/bin/gunicorn" --no-control-socket --chdir "$LAB_DIR/shims" \
        -b "127.0.0.1:$port" -w 1 --worker-class gthread --threads 8 --timeout 120 "${name%-api}_app:application"
}

# ---- Databases for placement and nova.
for _ in $(seq 1 300); do
    mariadb-admin --no-defaults -S "$SOCK" -u root ping >/dev/null 2>&1 && break
    alive mariadb || fail "mariadbd exited"
    sleep 0.2
done
mariadb --no-defaults -S "$SOCK" -u root <<EOF
CREATE DATABASE placement; CREATE DATABASE nova_api; CREATE DATABASE nova; CREATE DATABASE nova_cell0;
CREATE USER 'placement'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
CREATE USER 'nova'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL ON placement.* TO 'placement'@'localhost';
GRANT ALL ON nova_api.* TO 'nova'@'localhost';
GRANT ALL ON nova.* TO 'nova'@'localhost';
GRANT ALL ON nova_cell0.* TO 'nova'@'localhost';
EOF
db() { echo "mysql+pymysql://$1:$DB_PASSWORD@localhost/$2?unix_socket=$SOCK&charset=utf8"; }

authtoken() {
    cat <<EOF
auth_type = password
auth_url = $KS
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $1
password = $SERVICE_PASSWORD
EOF
}

cat >"$LAB_DIR/placement/placement.conf" <<EOF
[DEFAULT]
use_stderr = true
[placement_database]
connection = $(db placement placement)
[api]
auth_strategy = keystone
[keystone_authtoken]
www_authenticate_uri = $KS
$(authtoken placement)
EOF
"$LAB_VENV/bin/placement-manage" --config-file "$LAB_DIR/placement/placement.conf" db sync \
    >"$LAB_DIR/logs/placement-manage.log" 2>&1 &
PLACEMENT_SETUP=$!

cp "$LAB_VENV/etc/nova/api-paste.ini" "$LAB_DIR/nova/api-paste.ini"
cat >"$LAB_DIR/nova/nova.conf" <<EOF
[DEFAULT]
use_stderr = true
transport_url = $TRANSPORT
state_path = $LAB_DIR/nova/state
my_ip = 127.0.0.1
compute_driver = fake.FakeDriverWithoutFakeNodes
report_interval = 2
service_down_time = 10
heal_instance_info_cache_interval = -1
graceful_shutdown_timeout = 5
instance_build_timeout = 120
[api]
auth_strategy = keystone
[wsgi]
api_paste_config = $LAB_DIR/nova/api-paste.ini
[api_database]
connection = $(db nova nova_api)
[database]
connection = $(db nova nova)
[keystone_authtoken]
www_authenticate_uri = $KS
$(authtoken nova)
[placement]
region_name = RegionOne
$(authtoken nova)
[glance]
endpoint_override = http://127.0.0.1:$GLANCE_PORT
[neutron]
endpoint_override = http://127.0.0.1:$NEUTRON_PORT
region_name = RegionOne
$(authtoken nova)
[scheduler]
discover_hosts_in_cells_interval = 5
workers = 1
[conductor]
workers = 1
[quota]
driver = nova.quota.NoopQuotaDriver
[oslo_concurrency]
lock_path = $LAB_DIR/lock
[oslo_messaging_notifications]
driver = noop
[vnc]
enabled = false
[os_vif_ovs]
per_port_bridge = false
EOF
NM=("$LAB_VENV/bin/nova-manage" --config-file "$LAB_DIR/nova/nova.conf")
(
    "${NM[@]}" api_db sync
    "${NM[@]}" cell_v2 map_cell0 --database_connection "$(db nova nova_cell0)"
    "${NM[@]}" cell_v2 create_cell --name cell1 --verbose
    "${NM[@]}" db sync
) >"$LAB_DIR/logs/nova-manage.log" 2>&1 &
NOVA_SETUP=$!

wait "$KEYSTONE_SETUP" || fail "keystone-manage failed"
OS_KEYSTONE_CONFIG_DIR="$LAB_DIR/keystone" gunicorn keystone "$KEYSTONE_PORT"
"$PY" "$HERE/lab.py" wait-http "http://127.0.0.1:$KEYSTONE_PORT/v3" 60 || fail "keystone did not start"

export OS_AUTH_URL="$KS" OS_USERNAME=admin OS_PASSWORD="$ADMIN_PASSWORD" OS_PROJECT_NAME=admin \
    OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default OS_REGION_NAME=RegionOne \
    OS_IDENTITY_API_VERSION=3 OS_INTERFACE=public
export LAB_NOVA_PORT="$NOVA_PORT" LAB_PLACEMENT_PORT="$PLACEMENT_PORT" LAB_SERVICE_PASSWORD="$SERVICE_PASSWORD"
export LAB_COMPUTES="$COMPUTES"
IDS="$("$PY" "$HERE/lab.py" keystone-setup 2>"$LAB_DIR/logs/keystone-setup.log")" || fail "keystone setup failed"

wait "$PLACEMENT_SETUP" || fail "placement-manage db sync failed"
OS_PLACEMENT_CONFIG_DIR="$LAB_DIR/placement" gunicorn placement-api "$PLACEMENT_PORT"
start standins "$PY" "$HERE/standins.py" "$GLANCE_PORT" "$NEUTRON_PORT"

wait "$NOVA_SETUP" || fail "nova-manage failed"
OS_NOVA_CONFIG_DIR="$LAB_DIR/nova" OS_NOVA_CONFIG_FILES="api-paste.ini;nova.conf" gunicorn nova-api "$NOVA_PORT"
start nova-conductor "$LAB_VENV/bin/nova-conductor" --config-file "$LAB_DIR/nova/nova.conf"
start nova-scheduler "$LAB_VENV/bin/nova-scheduler" --config-file "$LAB_DIR/nova/nova.conf"
for h in $COMPUTES; do
    # A separate state_path per compute: FakeDriverWithoutFakeNodes keeps its node identity there, so a
    # restarted compute is the same node.
    mkdir -p "$LAB_DIR/nova/state-$h"
    cat >"$LAB_DIR/nova/compute-$h.conf" <<EOF
[DEFAULT]
host = $h
state_path = $LAB_DIR/nova/state-$h
instances_path = $LAB_DIR/nova/state-$h/instances
EOF
    start "nova-compute-$h" "$LAB_VENV/bin/nova-compute" \
        --config-file "$LAB_DIR/nova/nova.conf" --config-file "$LAB_DIR/nova/compute-$h.conf"
done

"$PY" "$HERE/lab.py" wait-http "http://127.0.0.1:$NOVA_PORT/" 90 || fail "nova-api did not start"
"$PY" "$HERE/lab.py" nova-ready "$READY_TIMEOUT" || fail "nova did not become ready"
"${NM[@]}" cell_v2 discover_hosts --verbose >>"$LAB_DIR/logs/nova-manage.log" 2>&1

IMAGE_ID="2b4c5a3e-6f0d-4c1e-9a57-000000000001"
cat >"$LAB_DIR/lab.env" <<EOF
export OS_AUTH_URL=$KS
export OS_USERNAME=admin
export OS_PASSWORD=$ADMIN_PASSWORD
export OS_PROJECT_NAME=admin
export OS_USER_DOMAIN_NAME=Default
export OS_PROJECT_DOMAIN_NAME=Default
export OS_REGION_NAME=RegionOne
export OS_IDENTITY_API_VERSION=3
export OS_INTERFACE=public
export LAB_DIR=$LAB_DIR
export LAB_VENV=$LAB_VENV
export LAB_COMPUTES="$COMPUTES"
export LAB_NOVA_URL=http://127.0.0.1:$NOVA_PORT/v2.1
export LAB_NOVA_PORT=$NOVA_PORT
export LAB_PLACEMENT_PORT=$PLACEMENT_PORT
export LAB_IMAGE_ID=$IMAGE_ID
export LAB_FLAVOR_ID=lab-tiny
export LAB_USER_PASSWORD=$SERVICE_PASSWORD
$(echo "$IDS" | sed 's/^/export /')
EOF
cat >"$LAB_DIR/clouds.yaml" <<EOF
clouds:
  freezer-dr-lab:
    auth:
      auth_url: $KS
      username: admin
      password: $ADMIN_PASSWORD
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    interface: public
    identity_api_version: 3
EOF
trap - ERR
cat <<EOF
freezer-dr OpenStack lab is up in $LAB_DIR
  Keystone  $KS   (admin / $ADMIN_PASSWORD, project admin, domain Default, region RegionOne)
  Nova      http://127.0.0.1:$NOVA_PORT/v2.1   computes: $COMPUTES (fake virt driver)
  boot:     image $IMAGE_ID, flavor lab-tiny, "networks": "none" (microversion >= 2.37)
  env:      . $LAB_DIR/lab.env      clouds.yaml: $LAB_DIR/clouds.yaml (cloud freezer-dr-lab)
  crash:    $HERE/compute.sh $LAB_DIR kill HOST    repair: $HERE/compute.sh $LAB_DIR start HOST
  stop:     $HERE/down.sh --purge $LAB_DIR
EOF
