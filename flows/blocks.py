"""The Prefect blocks the flow reads, saved by setup/prefect_setup_blocks.py under the names in
the settings: credentials and the lake's bucket (flows/gcp.py) and the Socrata app token."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, TypeVar

from flows.settings import Settings

if TYPE_CHECKING:
    from prefect.blocks.core import Block

log = logging.getLogger(__name__)

BlockT = TypeVar("BlockT", bound="Block")


def load_block(block_type: type[BlockT], name: str) -> BlockT | None:
    """A saved block by name, or None when no block of that name is saved."""
    from prefect.exceptions import ObjectNotFound

    try:
        block = block_type.load(name)
    except ValueError as exc:
        # any other ValueError (a block saved with a bad key, say) must not be hidden
        if not isinstance(exc.__cause__, ObjectNotFound):
            raise
        return None
    return block if isinstance(block, block_type) else None


def socrata_app_token(settings: Settings) -> str | None:
    """SOCRATA_APP_TOKEN, else the token saved in the Secret block, else None (throttled).

    Called inside a flow run, where a Prefect API is always there to ask. The token itself is
    never logged: only where it came from.
    """
    if settings.app_token:
        log.info("Socrata app token: from SOCRATA_APP_TOKEN")
        return settings.app_token
    from prefect.blocks.system import Secret

    secret = load_block(Secret, settings.socrata_token_block)
    if secret is None:
        log.warning(
            "no Socrata app token (neither SOCRATA_APP_TOKEN nor the Secret block %r): the "
            "portal may throttle this run",
            settings.socrata_token_block,
        )
        return None
    log.info("Socrata app token: from the Secret block %r", settings.socrata_token_block)
    value = secret.get()
    return str(value) if value else None
