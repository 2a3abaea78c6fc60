"""Chaos: everything going wrong at once, then a count on the servers themselves.

Why: each guarantee (G1–G5) has its own test, one fault at a time. Users trust the whole only
when it holds with crashes, outages, platform errors and their own edits all at the same time,
so this harness runs them together and counts what the *servers* hold, not what the database
says:

- real local peers (`servers`): nostr-relay (strict: refuses re-sent events), mastodon_mock
  (with its fault API), and a real Bluesky PDS when tests/peers/bluesky.py exists and the
  engine registers a Bluesky adapter (checked at run time; the table says when Bluesky was
  left out, and why);
- the workload (`workload`): two accounts per platform, N posts (each text unique) due over
  S seconds, written through the real queue code and a few through the plur-post CLI, plus
  recurring schedules (`--every 1m` and a cron every minute, ending with the run);
- D plur-send processes on one database (`daemons`), warmed up first by a post to every
  account;
- chaos: kill -9 of a random daemon every 0.5–3 s (restarted at once; until one kill has
  caught deliveries in flight, every kill goes to a daemon that holds some), the relay
  stopped and restarted on its port, Mastodon 429 (Retry-After: 1) / 503 / held requests
  (`faults`), and users' `plur-queue cancel|reschedule|now` and `plur-post` alongside
  (`users`): planned ones at fixed moments, to posts kept for them, so that every run holds
  a cancel and a reschedule that must bind, and random ones against whatever is queued;
- then the daemons get SIGTERM (they must exit 0), one fresh daemon drains what is left, held
  requests are waited out, and `checker.check` counts on the servers: every delivery not
  cancelled published exactly once, cancelled ones never, nothing left `sending`, every
  recurring occurrence once, the database's `sent` rows equal to what the servers hold.

The table (`report`) also gives lateness (see `report.lateness` for what counts as on time,
and why it is split by the relay outage) and the CPU each party used — this run's processes
only, the PostgreSQL server's with its backends on `--database postgresql`: on a 2-core
machine the chaos itself (restarting daemons, plur-queue runs) takes a good part of it.
`harness` runs the timeline.

    python -m bench.chaos                 # the full run (make chaos), ~90 s
    python -m bench.chaos --small         # the run inside make test, ~45 s
    python -m bench.chaos --help          # sizes, seeds, and switches to leave a fault out

Exit status: 0 when no invariant broke, 1 when one did (the table says which, with examples;
the working directory with logs, database and chaos-run.json is kept), 2 when the harness
itself could not run (a peer did not start, ...). Only 127.0.0.1 is used.
"""
