"""Per-user tokens for `dqa serve --users FILE`: one `NAME SHA256` line per person, the hash of their token.

The file holds hashes, never tokens, so reading it does not let anyone in. A token is any long random
string; its hash is the hex sha256 of its UTF-8 bytes (`printf %s "$TOKEN" | sha256sum`).
"""
from __future__ import annotations

import hashlib
import re

from vrthinker.errors import UsageError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}")
HASH = re.compile(r"[0-9a-f]{64}")
TOKEN_USER = "admin"  # who the shared --token signs in as


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_users(text: str, where: str = "--users") -> dict[str, str]:
    """{name: token hash} from the file's text; blank lines and `#` comments are skipped. A bad line, a name
    or hash given twice, or an empty file is a UsageError naming the line."""
    users: dict[str, str] = {}
    seen: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or not NAME.fullmatch(parts[0]) or not HASH.fullmatch(parts[1].lower()):
            raise UsageError(f"{where} line {n}: expected 'NAME SHA256' (a name of letters, digits and _.@+-, "
                             "then the 64 hex digits of the sha256 of the token)")
        name, digest = parts[0], parts[1].lower()
        if name == TOKEN_USER:
            raise UsageError(f"{where} line {n}: the name {TOKEN_USER!r} is the shared --token's; pick another")
        if name in users:
            raise UsageError(f"{where} line {n}: {name} is listed twice")
        if digest in seen:
            raise UsageError(f"{where} line {n}: the same token hash as {seen[digest]}; give each person a token")
        users[name], seen[digest] = digest, name
    if not users:
        raise UsageError(f"{where}: no users in the file")
    return users


def load_users(path: str) -> dict[str, str]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise UsageError(f"--users {path}: cannot read it ({e.strerror})") from None
    except UnicodeDecodeError:
        raise UsageError(f"--users {path}: not UTF-8 text") from None
    return parse_users(text, f"--users {path}")
