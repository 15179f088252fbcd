#!/usr/bin/env bash
# make demo: a local management etcd, the demo cluster declaration stored and shown back.
# `scripts/demo.sh down` stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${DEMO_DIR:-$PWD/.demo}
CKECLI=${CKECLI:-$PWD/target/debug/ckecli}
PORT=${DEMO_ETCD_PORT:-23790}

down() {
  if [ -f "$DIR/etcd.pid" ]; then
    kill "$(cat "$DIR/etcd.pid")" 2>/dev/null || true
    rm -f "$DIR/etcd.pid"
  fi
  rm -rf "$DIR"
}

if [ "${1:-up}" = down ]; then down; echo "demo stopped"; exit 0; fi

down
mkdir -p "$DIR"
echo "==> starting the management etcd on 127.0.0.1:$PORT"
etcd --name demo --data-dir "$DIR/etcd" \
  --listen-client-urls "http://127.0.0.1:$PORT" --advertise-client-urls "http://127.0.0.1:$PORT" \
  --listen-peer-urls "http://127.0.0.1:$((PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((PORT + 1))" \
  --initial-cluster "demo=http://127.0.0.1:$((PORT + 1))" >"$DIR/etcd.log" 2>&1 &
echo $! >"$DIR/etcd.pid"
cat >"$DIR/config.yml" <<CONF
endpoints: ["http://127.0.0.1:$PORT"]
prefix: /cke/
CONF
export CKECLI_CONFIG="$DIR/config.yml"
for _ in $(seq 50); do "$CKECLI" constraints show >/dev/null 2>&1 && break; sleep 0.2; done

run() { echo; echo "\$ ckecli $*"; "$CKECLI" "$@"; }
run cluster validate testdata/cluster.yml
run cluster set testdata/cluster.yml
run constraints set control-plane-count 3
run cluster get
run constraints show
echo
echo "\$ ckecli cluster set testdata/invalid/bad-address.yml   # refused, nothing stored"
"$CKECLI" cluster set testdata/invalid/bad-address.yml || echo "(exit $?)"
cat <<MSG

The management etcd keeps running. Try:
  export CKECLI_CONFIG=$DIR/config.yml
  $CKECLI cluster get --output json
  $CKECLI history
Stop it with: make demo-down
MSG
