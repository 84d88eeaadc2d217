"""Stand-in for dbt's `target` when sqlfluff renders models with its jinja templater.

Models branch on `target.type` for adapter-specific configuration (fct_crimes partitions and
clusters on BigQuery only). sqlfluff lints with the `duckdb` dialect, so the stand-in is the
duckdb target of profiles.yml.
"""

type = "duckdb"
name = "duckdb"
schema = "crime_marts"
