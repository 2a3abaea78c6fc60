#!/usr/bin/env bash
# Plurcast end to end on a throwaway config, key and database, with a real Nostr relay
# on 127.0.0.1 — no account needed, and your own config and queue are not touched.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
relay_pid=""
daemon_pid=""
cleanup() {
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
    [ -n "$relay_pid" ] && kill "$relay_pid" 2>/dev/null && wait "$relay_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n$ %s\n' "$*"; "$@"; }

echo "Starting a local Nostr relay (nostr-relay; built once into ~/.cache/plurcast-peers)…"
python -m tests.peers.nostr serve --dir "$work/relay" >"$work/relay.url" 2>"$work/relay.log" &
relay_pid=$!
for _ in $(seq 600); do
    [ -s "$work/relay.url" ] && break
    kill -0 "$relay_pid" 2>/dev/null || { cat "$work/relay.log"; exit 1; }
    sleep 0.5
done
relay=$(head -n 1 "$work/relay.url")
echo "relay: $relay"

export PLURCAST_CONFIG="$work/config.toml" PLURCAST_DB_PATH="$work/posts.db" NO_COLOR=1
python -c 'import nostr_sdk; print(nostr_sdk.Keys.generate().secret_key().to_bech32())' \
    >"$work/nostr.keys"
chmod 600 "$work/nostr.keys"
cat >"$PLURCAST_CONFIG" <<TOML
timezone = "Europe/Berlin"

[nostr]
keys_file = "$work/nostr.keys"
relays = ["$relay"]

[scheduling]
poll_interval = 60
TOML

step plur-post "Hello from Plurcast — published right now 👋"
step plur-post "Five seconds from now" --schedule 5s
step plur-post "Said in plain words: fifteen seconds from now" --schedule "15 seconds from now"
step plur-post "30–40 s after the last queued post, at random 🎲" --schedule random:30s-40s
step plur-post "Tomorrow morning, in Berlin time" --schedule "tomorrow 9am"
step plur-queue list

printf '\n$ plur-send &   # the daemon: sleeps until each post is due, then sends it\n'
plur-send >"$work/plur-send.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 120); do
    due=$(plur-queue stats -f json | python -c \
        'import json,sys; b=json.load(sys.stdin)["by_time_bucket"]; print(b["overdue"]+b["next_hour"])')
    [ "$due" = "0" ] && break
    sleep 1
done
kill -TERM "$daemon_pid" && wait "$daemon_pid" && daemon_pid=""
cat "$work/plur-send.log"

step plur-queue list --all
printf '\n$ plur-queue show <the random one>\n'
plur-queue show "$(plur-queue list --all -f json | python -c \
    'import json,sys; print(next(p["id"] for p in json.load(sys.stdin) if "🎲" in p["content"]))')"
printf '\nDelivery results (sent_at − scheduled time):\n'
python - "$PLURCAST_DB_PATH" <<'PY'
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
rows = conn.execute(
    "SELECT substr(p.content, 1, 44), d.state, d.remote_id, d.sent_at_ms - p.scheduled_at_ms "
    "FROM deliveries d JOIN posts p ON p.id = d.post_id WHERE d.state = 'sent' ORDER BY d.sent_at_ms"
)
for content, state, remote, late in rows:
    print(f"  {state:5} {late / 1000:+7.3f} s  {remote[:20]}…  {content}")
PY
printf '\nWhat the relay stored:\n'
python -m tests.peers.nostr events --dir "$work/relay"
