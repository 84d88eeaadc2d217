"""Seattle crime loader: Socrata -> Parquet lake -> warehouse -> dbt."""

__version__ = "0.1.0"
