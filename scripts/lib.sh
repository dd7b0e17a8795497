# shellcheck shell=bash
# Helpers shared by scripts/engine, scripts/services and scripts/quickstart. Sourced, never run.
# Every function either succeeds or stops the script with a message that says what to do.

# Prints a message to stderr and exits 1.
die() {
  printf 'error: %s\n' "$1" >&2
  if [ $# -gt 1 ]; then
    printf '  fix: %s\n' "$2" >&2
  fi
  exit 1
}

# Stops unless run as root; $1 names the script, which installs packages and starts dockerd.
require_root() {
  [ "$(id -u)" = 0 ] || die "$1 installs packages and starts dockerd: it must run as root" "run it with sudo, or as root"
}

# Installs the Debian packages named (only those missing are passed by the callers).
apt_install() {
  [ $# -gt 0 ] || return 0
  echo "installing $*"
  apt-get update -qq || die "apt-get update failed" "check the machine's package sources (/etc/apt/sources.list*) and run this script again"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null \
    || die "apt-get install $* failed" "run 'apt-get install $*' by hand to see why, then run this script again"
}

# Succeeds when $1 is a dotted-quad IPv4 address (each part 0-255, no leading zeros).
is_ipv4() {
  local part
  local -a parts
  [[ "$1" =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || return 1
  IFS=. read -r -a parts <<<"$1"
  for part in "${parts[@]}"; do
    [[ "$part" =~ ^(0|[1-9][0-9]*)$ ]] || return 1
    [ "$part" -le 255 ] || return 1
  done
}

# Waits until the command given succeeds, up to $1 tries half a second apart.
wait_for() {
  local tries=$1
  shift
  local _i
  for _i in $(seq 1 "$tries"); do
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.5
  done
  return 1
}

# Prints the Docker bridge's gateway: the address containers reach this machine at, which
# `host.docker.internal` names inside them. Engines differ in where they report it, so in order:
#   1. the default bridge network's IPAM config (empty on some 20.10 engines);
#   2. the IPv4 address of the bridge's interface (`com.docker.network.bridge.name`, else docker0);
#   3. the default route inside a container on that bridge (busybox:stable must exist).
# Each answer must be a valid IPv4 address; stops the script if none is.
find_gateway() {
  local gw bridge_if
  gw=$(docker network inspect bridge -f '{{range .IPAM.Config}}{{.Gateway}} {{end}}' 2>/dev/null | awk '{print $1}') || gw=""
  if is_ipv4 "$gw"; then
    echo "$gw"
    return 0
  fi
  bridge_if=$(docker network inspect bridge -f '{{index .Options "com.docker.network.bridge.name"}}' 2>/dev/null) || bridge_if=""
  [[ "$bridge_if" =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || bridge_if=docker0
  gw=$(ip -4 -o addr show dev "$bridge_if" 2>/dev/null | awk '{split($4, a, "/"); print a[1]; exit}') || gw=""
  if is_ipv4 "$gw"; then
    echo "$gw"
    return 0
  fi
  gw=$(docker run --rm --network bridge busybox:stable ip -4 route show default 2>/dev/null | awk '/^default via/ {print $3; exit}') || gw=""
  if is_ipv4 "$gw"; then
    echo "$gw"
    return 0
  fi
  die "could not find the Docker bridge's gateway address (not in 'docker network inspect bridge', not on interface $bridge_if, not as a container's default route)" \
    "check that dockerd runs with its default bridge ('docker network inspect bridge', 'ip -4 addr show $bridge_if'); a bridge disabled with '\"bridge\": \"none\"' in /etc/docker/daemon.json must be re-enabled"
}

# Writes $2 to the file $1 (through a temporary file) unless it holds that already; prints
# "changed" when it wrote.
write_if_changed() {
  local file=$1 want=$2
  if [ "$(cat "$file" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  mkdir -p "$(dirname "$file")" || die "cannot create $(dirname "$file")"
  if ! printf '%s\n' "$want" >"$file.tmp"; then
    die "cannot write $file.tmp"
  fi
  mv "$file.tmp" "$file" || die "cannot write $file"
  echo changed
}

# Refuses (stops the script) a gateway address that is empty or malformed, naming the file that
# would have been written.
check_gateway() {
  is_ipv4 "$2" || die "refusing to write $1: the gateway address '$2' is not an IPv4 address" \
    "find the bridge's address with 'ip -4 addr show docker0' and report how scripts/lib.sh missed it"
}

# Writes PostgreSQL's listen_addresses (loopback and the gateway) to the file $1; prints
# "changed" when its content changed. Refuses an empty or malformed gateway, writing nothing.
write_pg_listen() {
  check_gateway "$1" "$2"
  write_if_changed "$1" "listen_addresses = '127.0.0.1,$2'"
}

# Writes MariaDB's bind-address (loopback and the gateway) to the file $1, as write_pg_listen.
write_mariadb_bind() {
  check_gateway "$1" "$2"
  write_if_changed "$1" "$(printf '[mysqld]\nbind-address = 127.0.0.1,%s' "$2")"
}
