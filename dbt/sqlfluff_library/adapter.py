"""Stand-in for dbt's `adapter` when sqlfluff renders models with its jinja templater.

`adapter.dispatch(name, namespace)` resolves to the `default__<name>` macro, the DuckDB
implementation, which matches the `duckdb` dialect that sqlfluff lints with.
"""

from jinja2 import pass_context
from jinja2.runtime import Context


@pass_context
def dispatch(context: Context, macro_name: str, _macro_namespace: str | None = None) -> object:
    """Return the default implementation of a dispatched macro."""
    return context.resolve(f"default__{macro_name}")
