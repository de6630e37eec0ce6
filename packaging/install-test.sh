#!/bin/bash
# `make deb-install-test`: the .deb in a scratch Debian root (debootstrap +
# chroot), through what an administrator does with it: install, first admin,
# publish, upgrade (a local change to the conffile and the data survive),
# remove (data, configuration and user stay), reinstall, purge (all gone).
#
# There is no systemd inside the chroot: the server is started the way the
# unit does (as the `tidings` user, ExecStartPre then ExecStart with the
# installed configuration), the listener moved to 127.0.0.1 by
# TIDINGS_LISTEN. The unit's sandboxing itself is checked by
# tests/packaging.rs (systemd-analyze).
#
# Needs root and, the first time, debootstrap (installed when missing) and
# the Debian mirror: the base root is kept in target/deb-install-test/base.
# SUITE (default: this machine's codename) and MIRROR override the defaults.
#
#   packaging/install-test.sh target/debian/tidings_0.1.0-1_amd64.deb
set -euo pipefail

DEB=$(realpath "${1:?usage: $0 PATH/TO/tidings_VERSION_ARCH.deb}")
WORK=$(realpath -m "${WORK:-target/deb-install-test}")
SUITE=${SUITE:-$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
ROOT=$WORK/root
SERVER_PID=
PORT=

fail() { echo "FAIL: $*" >&2; [ -f "$WORK/server.log" ] && tail -20 "$WORK/server.log" >&2; exit 1; }
ok() { echo "ok: $*"; }
step() { echo; echo "== $*"; }
in_root() { chroot "$ROOT" "$@"; }
# "owner:group mode" of a path inside the root, names from the root's passwd.
perms() { in_root stat -c '%U:%G %a' "$1"; }
expect_perms() { [ "$(perms "$1")" = "$2" ] || fail "$1 is $(perms "$1"), want $2"; ok "$1 $2"; }
tidings() { in_root /usr/bin/tidings "$@" --config /etc/tidings/tidings.toml; }

cleanup() {
    stop_server || true
    if mountpoint -q "$ROOT/proc"; then umount "$ROOT/proc"; fi
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || fail "run as root (chroot, and dpkg inside the root)"

make_base() {
    [ -d "$WORK/base" ] && return
    if ! command -v debootstrap >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    rm -rf "$WORK/base.tmp"
    mkdir -p "$WORK"
    debootstrap --variant=minbase --include=adduser "$SUITE" "$WORK/base.tmp" "$MIRROR"
    mv "$WORK/base.tmp" "$WORK/base"
}

# Starts the installed server like tidings.service, as the tidings user.
start_server() {
    local uid gid
    uid=$(in_root id -u tidings)
    gid=$(in_root id -g tidings)
    chroot --userspec="$uid:$gid" "$ROOT" /usr/bin/tidings config check /etc/tidings/tidings.toml \
        || fail "ExecStartPre: config check refused the installed configuration"
    : > "$WORK/server.log"
    TIDINGS_LISTEN=127.0.0.1:0 chroot --userspec="$uid:$gid" "$ROOT" \
        /usr/bin/tidings serve --config /etc/tidings/tidings.toml 2>"$WORK/server.log" &
    SERVER_PID=$!
    for _ in $(seq 200); do
        PORT=$(sed -n 's/.*listening addr=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/server.log")
        [ -n "$PORT" ] && break
        kill -0 "$SERVER_PID" 2>/dev/null || fail "the server exited at start"
        sleep 0.1
    done
    [ -n "$PORT" ] || fail "the server did not log its address"
    for _ in $(seq 200); do
        [ "$(http GET /health/ready)" = 200 ] && { ok "serving on 127.0.0.1:$PORT, ready"; return; }
        sleep 0.1
    done
    fail "/health/ready did not answer 200"
}

stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || fail "the server exited with $? after SIGTERM"
    SERVER_PID=
    ok "stopped cleanly"
}

# http METHOD PATH [curl args…]: prints the status; the body goes to $WORK/body.
http() {
    local method=$1 path=$2
    shift 2
    curl -s -o "$WORK/body" -w '%{http_code}' -X "$method" "http://127.0.0.1:$PORT$path" "$@" || true
}

# An "upgrade": the same package with a higher version.
make_next_version() {
    local dir=$WORK/next
    rm -rf "$dir"
    dpkg-deb -R "$DEB" "$dir"
    sed -i 's/^Version: .*/&+next1/' "$dir/DEBIAN/control"
    dpkg-deb --root-owner-group -b "$dir" "$ROOT/tmp/next.deb" >/dev/null
}

step "scratch root ($SUITE)"
make_base
rm -rf "$ROOT"
cp -a "$WORK/base" "$ROOT"
mount -t proc proc "$ROOT/proc"
cp "$DEB" "$ROOT/tmp/tidings.deb"
make_next_version
ok "$ROOT"

step "install"
in_root dpkg -i /tmp/tidings.deb
IFS=: read -r _ _ uid _ _ home shell < <(in_root getent passwd tidings) || fail "no user tidings"
[ "$uid" -lt 1000 ] || fail "tidings is not a system user (uid $uid)"
[ "$home" = /var/lib/tidings ] || fail "home of tidings is $home"
[ "$shell" = /usr/sbin/nologin ] || fail "shell of tidings is $shell"
in_root getent group tidings >/dev/null || fail "no group tidings"
ok "system user tidings (uid $uid, home $home, shell $shell)"
expect_perms /var/lib/tidings "tidings:tidings 750"
expect_perms /etc/tidings/tidings.toml "root:tidings 640"
expect_perms /etc/default/tidings "root:root 600"
expect_perms /usr/bin/tidings "root:root 755"
expect_perms /usr/lib/systemd/system/tidings.service "root:root 644"
[ -L "$ROOT/etc/systemd/system/multi-user.target.wants/tidings.service" ] || fail "unit not enabled"
ok "tidings.service enabled"
[ -s "$ROOT/var/lib/dpkg/info/tidings.md5sums" ] || fail "dpkg recorded no md5sums"
[ -z "$(in_root dpkg --verify tidings)" ] || fail "dpkg --verify: $(in_root dpkg --verify tidings)"
ok "dpkg --verify clean"

step "first admin, an API token, an event"
start_server
grep -q 'setup_token=' "$WORK/server.log" || fail "no setup token in the log"
ok "setup token logged"
echo 'correct horse battery staple' | tidings user add admin --role admin --password-stdin
token=$(tidings token create --name ci --role publisher | grep -o 'tdg_[A-Za-z0-9_-]*' | head -1)
[ -n "$token" ] || fail "no API token printed"
[ "$(http GET '/api/v1/events?streams=orders')" = 401 ] || fail "anonymous read allowed"
status=$(http POST /api/v1/events -H "authorization: Bearer $token" \
    -H 'content-type: application/json' -d '{"type":"order.created","stream_id":"orders"}')
[ "$status" = 201 ] || fail "publish answered $status: $(cat "$WORK/body")"
ok "published with an API token created through the control socket"
stop_server
stray=$(find "$ROOT/var/lib/tidings" ! -uid "$uid" | head -3)
[ -z "$stray" ] || fail "files in /var/lib/tidings not owned by tidings: $stray"
ok "every file in /var/lib/tidings belongs to tidings"

step "root's commands on the stopped server leave the files to tidings"
echo 'another horse battery staple' | tidings user add ops --role user --password-stdin
tidings compact >/dev/null
tidings export --out /root/backup.ndjson
stray=$(find "$ROOT/var/lib/tidings" ! -uid "$uid" | head -3)
[ -z "$stray" ] || fail "files in /var/lib/tidings not owned by tidings after root's commands: $stray"
start_server
tidings user list | grep -q ops || fail "user ops not kept"
stop_server
ok "user add, compact and export as root with the server stopped"

step "upgrade keeps the configuration and the data"
echo '# local change' >> "$ROOT/etc/tidings/tidings.toml"
in_root dpkg -i /tmp/next.deb
version=$(in_root dpkg-query -W -f='${Version}' tidings)
case $version in *+next1) ok "upgraded to $version" ;; *) fail "version $version after upgrade" ;; esac
grep -q '^# local change' "$ROOT/etc/tidings/tidings.toml" || fail "conffile change lost"
ok "local change to /etc/tidings/tidings.toml kept"
expect_perms /var/lib/tidings "tidings:tidings 750"
[ "$(in_root id -u tidings)" = "$uid" ] || fail "uid of tidings changed"
start_server
tidings user list | grep -q admin || fail "user admin lost"
status=$(http GET '/api/v1/events?streams=orders' -H "authorization: Bearer $token")
[ "$status" = 200 ] && grep -q order.created "$WORK/body" || fail "event lost: $status $(cat "$WORK/body")"
ok "user, token and event still there"
stop_server

step "remove keeps data, configuration and user"
in_root dpkg -r tidings
[ ! -e "$ROOT/usr/bin/tidings" ] || fail "/usr/bin/tidings still there"
[ -n "$(ls -A "$ROOT/var/lib/tidings")" ] || fail "data removed"
[ -f "$ROOT/etc/tidings/tidings.toml" ] || fail "configuration removed"
in_root getent passwd tidings >/dev/null || fail "user removed"
ok "binary gone; /var/lib/tidings, /etc/tidings and the user kept"

step "reinstall finds them"
in_root dpkg -i /tmp/next.deb
[ -L "$ROOT/etc/systemd/system/multi-user.target.wants/tidings.service" ] || fail "unit not enabled again"
[ ! -e "$ROOT/etc/systemd/system/tidings.service" ] || fail "unit still masked"
start_server
tidings user list | grep -q admin || fail "user admin lost"
ok "data kept across remove and reinstall"
stop_server

step "purge removes data, configuration and user"
in_root dpkg -P tidings
for path in /var/lib/tidings /etc/tidings /etc/default/tidings \
    /etc/systemd/system/tidings.service \
    /etc/systemd/system/multi-user.target.wants/tidings.service; do
    [ ! -e "$ROOT$path" ] && [ ! -L "$ROOT$path" ] || fail "$path left after purge"
done
! in_root getent passwd tidings >/dev/null || fail "user left after purge"
! in_root getent group tidings >/dev/null || fail "group left after purge"
ok "nothing left"

umount "$ROOT/proc"
rm -rf "$ROOT" "$WORK/next"
echo
echo "deb-install-test: all passed (the base root stays in $WORK/base)"
