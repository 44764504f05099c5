"""Connection URLs as they may be shown: passwords (and NATS tokens) hidden."""

from __future__ import annotations

import re

# Every ``scheme://userinfo@`` in a URL, or in a comma-separated list of them (a NATS cluster,
# libpq's several hosts), even when a password holds a comma or an "@".
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<info>[^/?#]*)@")


# A password given as a query parameter (libpq's ``?password=`` and ``sslpassword=``).
_QUERY_PASSWORD = re.compile(r"(?P<name>[?&](?:ssl)?password=)[^&#,]*", re.IGNORECASE)


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

    return _QUERY_PASSWORD.sub(r"\g<name>***", _USERINFO.sub(hide, url))


def split_schema(url: str, default: str) -> tuple[str, str]:
    """A PostgreSQL URL without its ``?schema=NAME``, and that schema (``default`` if none).

    libpq does not know ``schema``; statesaga reads it to keep its tables in their own
    schema. The other query parameters stay as they were.
    """
    # Only PostgreSQL URLs are split: every import of statesaga loads this module (errors
    # hide credentials with it), few need urllib.parse.
    from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    query = parse_qs(parts.query, keep_blank_values=True)
    schema = query.pop("schema", [default])[-1]
    rest = urlencode(query, doseq=True)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment)), schema
