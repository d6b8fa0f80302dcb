"""The command line's per-user file: who is logged in to which server, with which token.

The file is ``$XDG_CONFIG_HOME/railtix/config.json`` (``~/.config/railtix/config.json`` when the
variable is unset), keyed by server address so that one person can use several servers. A token
is as good as a password for 30 days, so the file is created with mode 0600 in a 0700 directory
and replaced atomically (never left half written, never briefly readable by others).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import msgspec


class Login(msgspec.Struct, omit_defaults=True):
    user: str
    token: str
    expires: str | None = None


class Config(msgspec.Struct):
    servers: dict[str, Login] = {}


def path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "railtix" / "config.json"


def load(file: Path | None = None) -> Config:
    """The saved config; an empty one when the file is absent or unreadable."""
    file = file or path()
    try:
        data = file.read_bytes()
    except OSError:
        return Config()
    try:
        return msgspec.json.decode(data, type=Config)
    except msgspec.DecodeError:
        return Config()


def save(config: Config, file: Path | None = None) -> Path:
    file = file or path()
    file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".json", dir=file.parent)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(msgspec.json.format(msgspec.json.encode(config), indent=2) + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, file)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return file


def login_for(server: str, file: Path | None = None) -> Login | None:
    return load(file).servers.get(server)


def remember(server: str, reply: dict[str, Any], file: Path | None = None) -> Path:
    """Store the token of a login reply for ``server``."""
    config = load(file)
    config.servers[server] = Login(user=reply["user"], token=reply["token"], expires=reply.get("expires"))
    return save(config, file)


def forget(server: str, file: Path | None = None) -> Login | None:
    """Drop the login for ``server``; the login that was there, if any."""
    config = load(file)
    gone = config.servers.pop(server, None)
    if gone is not None:
        save(config, file)
    return gone
