#!/usr/bin/env bash
# The queue, end to end, on a throwaway config and database (your own are not touched).
set -euo pipefail

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PLURCAST_CONFIG="$work/config.toml" PLURCAST_DB_PATH="$work/posts.db" NO_COLOR=1
cat >"$PLURCAST_CONFIG" <<'TOML'
timezone = "Europe/Berlin"

[nostr]
relays = ["ws://127.0.0.1:7777"]

[mastodon]
instance = "mastodon.example"

[defaults]
platforms = ["nostr", "mastodon"]
TOML

step() { printf '\n$ %s\n' "$*"; "$@"; }
id_of() { sed -n 's/^scheduled:\([0-9a-f-]*\):.*/\1/p'; }

step plur-post "Good morning, open social web ☀️" --schedule "tomorrow 9am"
step plur-post "Thirty minutes from now" --schedule 30m -p nostr
first=$(plur-post "Sometime in the next hour or two" --schedule random:1h-2h | tee /dev/stderr | id_of)
step plur-post "Launch day 🚀" --schedule "2027-01-01 10:00 America/New_York"
echo "A post from a pipe" | step plur-post --schedule "next friday 15:30"
step plur-post "Not ready yet" --draft

step plur-queue list
step plur-queue reschedule "${first:0:8}" -30m
step plur-queue show "${first:0:8}"
step plur-queue cancel "${first:0:8}" --force
step plur-queue list --all
step plur-queue list -f json
step plur-queue stats

printf '\n$ plur-post "too late" --schedule yesterday   # errors are one line, exit 3, nothing written\n'
plur-post "too late" --schedule yesterday || echo "(exit $?)"
