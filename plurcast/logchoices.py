"""The log levels and formats a user may choose, importable without `logging`.

Every command offers --log-level and --log-format (`clikit`), few runs use them: the
choices live here so that offering them costs nothing; `plurcast.logs` acts on them.
"""

FORMATS = ("text", "json", "pretty", "journal")
# The original's levels; `trace` is `debug` with the SDKs' own chatter too.
LEVELS = ("error", "warn", "warning", "info", "debug", "trace")
