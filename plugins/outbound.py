"""The bundled ``outbound`` plugin: the settings of the outbound policy that every model source
shares (``corral.sdk.outbound``; docs/security.md, "Outbound policy")."""

from __future__ import annotations

from typing import Any

from corral import SettingSpec, hookimpl, parse_bool


def _size(value: Any) -> int:
    number = int(value)
    if number < 1024:
        raise ValueError("must be at least 1024 bytes")
    return number


@hookimpl
def register_settings() -> list[SettingSpec]:
    return [
        SettingSpec(key="sources.block_private_addresses", default=False, converter=parse_bool,
                    env="CORRAL_BLOCK_PRIVATE_ADDRESSES",
                    help="refuse pulls and redirects to loopback, private and unique-local addresses "
                         "(link-local ones are always refused)"),
        SettingSpec(key="sources.max_metadata_bytes", default=16 * 1024 * 1024, converter=_size,
                    help="the most bytes read (after decompression) of a remote answer that is not model "
                         "data: file listings, manifests, tokens"),
    ]
