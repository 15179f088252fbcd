#!/usr/bin/env bash
# make demo: five node hosts (mtest), a management etcd, OpenBao, `ckecli vault init`, a
# 3-control-plane cluster declared, `cke` started; waits until the managed etcd is healthy, shows its
# members, and prints how to scale it. `scripts/demo.sh down` removes everything.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=$PWD/.demo
BIN=$PWD/target/debug
MTEST="mtest/mtest.sh --dir $DIR/mtest --prefix demo --subnet 10.66.0"

down() {
  if [ -f "$DIR/cke.pid" ]; then kill "$(cat "$DIR/cke.pid")" 2>/dev/null || true; rm -f "$DIR/cke.pid"; fi
  $MTEST down >/dev/null 2>&1 || true
  rm -rf "$DIR"
}

if [ "${1:-up}" = down ]; then down; echo "demo removed"; exit 0; fi
[ "$(id -u)" = 0 ] || { echo "make demo needs root (network and mount namespaces)"; exit 1; }

down
mkdir -p "$DIR"
echo "==> node hosts 10.66.0.11-15, management etcd, OpenBao"
$MTEST up --nodes 5 --image "localhost/cke-tools:latest=$BIN/rivers"
set -a; . "$DIR/mtest/env"; set +a
export CKECLI_CONFIG=$CKE_CONFIG
run() { echo; echo "\$ ckecli $*"; "$BIN/ckecli" "$@"; }

run vault init | tail -3
run vault ssh-privkey "$SSH_KEY"
run constraints set control-plane-count 3
run cluster set testdata/cluster.yml

echo; echo "==> starting cke (log: $DIR/cke.log, status: http://127.0.0.1:10180/status)"
setsid "$BIN/cke" --config "$CKE_CONFIG" --name demo --http 127.0.0.1:10180 --interval 5s \
  --session-ttl 10s --container-cli podman > "$DIR/cke.log" 2>&1 < /dev/null &
echo $! > "$DIR/cke.pid"

# Root credentials for the managed etcd, to watch it come up.
members() {
  "$BIN/ckecli" etcd root-issue --output json > "$DIR/root.json"
  python3 - "$DIR" <<'PY'
import json, sys
d = sys.argv[1]; v = json.load(open(f"{d}/root.json"))
for k, f in (("certificate", "root.crt"), ("private_key", "root.key"), ("ca_certificate", "ca.crt")):
    open(f"{d}/{f}", "w").write(v[k])
PY
  ETCDCTL_API=3 etcdctl --endpoints "$1" --cacert "$DIR/ca.crt" --cert "$DIR/root.crt" --key "$DIR/root.key" \
    --command-timeout 3s member list -w table
}
start=$(date +%s)
echo "==> waiting for the managed etcd"
until members https://10.66.0.11:2379,https://10.66.0.12:2379,https://10.66.0.13:2379 > "$DIR/members.txt" 2>/dev/null \
      && [ "$(grep -c started "$DIR/members.txt")" -eq 3 ] && ! grep -q true "$DIR/members.txt"; do
  sleep 2
  if [ $(( $(date +%s) - start )) -gt 300 ]; then echo "timed out; see $DIR/cke.log"; exit 1; fi
done
echo "managed etcd is up after $(( $(date +%s) - start ))s:"
cat "$DIR/members.txt"
ETCDCTL_API=3 etcdctl --endpoints https://10.66.0.11:2379,https://10.66.0.12:2379,https://10.66.0.13:2379 \
  --cacert "$DIR/ca.crt" --cert "$DIR/root.crt" --key "$DIR/root.key" endpoint health
run history -n 3 | grep -E '"(operation|status)"' || true

cat <<MSG

The cluster is running. Try:
  export CKECLI_CONFIG=$CKE_CONFIG VAULT_ADDR=$VAULT_ADDR
  $BIN/ckecli status; $BIN/ckecli plan; $BIN/ckecli history -f
  curl -s 127.0.0.1:10180/metrics | grep cke_
Scale the managed etcd to five members (learners join one at a time):
  $BIN/ckecli constraints set control-plane-count 5
  $BIN/ckecli cluster set testdata/cluster-5.yml
Remove everything: make demo-down
MSG
