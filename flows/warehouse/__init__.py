"""Where the data is modelled: staging over the lake in DuckDB or BigQuery, and dbt."""
