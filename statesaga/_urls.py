"""Connection URLs as they may be shown: passwords (and NATS tokens) hidden."""

from __future__ import annotations

import re

# Every ``scheme://userinfo@`` in a URL, or in a comma-separated list of them (a NATS cluster,
# libpq's several hosts), even when a password holds a comma or an "@".
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<info>[^/?#]*)@")


def hide_credentials(url: str, *, tokens: bool = False) -> str:
    """``url`` with each password replaced by ``***``, for messages and logs; never raises.

    Args:
        url: One URL, or several separated by commas.
        tokens: Also hide a user part that has no password (NATS reads it as a token).
    """

    def hide(match: re.Match[str]) -> str:
        user, colon, _ = match["info"].partition(":")
        info = f"{user}:***" if colon else ("***" if tokens and user else user)
        return f"{match['scheme']}{info}@"

    return _USERINFO.sub(hide, url)
