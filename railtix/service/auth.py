"""Passwords as salted scrypt hashes; bearer tokens as random strings stored only as hashes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

#: scrypt cost: N=2**14, r=8 costs ~16 MiB and tens of milliseconds, OWASP's floor for scrypt.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 * 1024 * 1024, dklen=32
    )
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    got = hashlib.scrypt(
        password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
        maxmem=64 * 1024 * 1024, dklen=32,
    )
    return hmac.compare_digest(got, base64.b64decode(digest))


#: A password hash of no user, checked when the user does not exist so that a failed login
#: takes as long whether or not the name is registered.
DUMMY_HASH = hash_password(secrets.token_hex(16))


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
