"""Secrets for the operator's view: the web access token and apprise URLs, read from systemd
credentials ($CREDENTIALS_DIRECTORY/NAME, set up with LoadCredential= in the unit) or from
a file named in the config.

What it must never do: log or return a secret inside an error message, or fall back to
running without a credential that the configuration names (a named but missing credential
is a configuration error, exit 78).
"""
from __future__ import annotations

import os
from pathlib import Path

from daemon.config import AlertsCfg, ConfigError, WebCfg

_MAX_BYTES = 64 * 1024


def _read(path: Path, what: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{what}: cannot read {path}: {e.strerror or e}") from None
    if len(data) > _MAX_BYTES:
        raise ConfigError(f"{what}: {path} is larger than {_MAX_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what}: {path} is not UTF-8 text") from None


def credential(name: str, what: str, environ: dict[str, str] | None = None) -> str:
    """The text of systemd credential `name`."""
    env = os.environ if environ is None else environ
    directory = env.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise ConfigError(f"{what}: credential {name!r} is configured but $CREDENTIALS_DIRECTORY "
                          f"is not set (LoadCredential={name}:FILE in the unit)")
    return _read(Path(directory) / name, what)


def web_token(cfg: WebCfg, environ: dict[str, str] | None = None) -> str | None:
    """The page's access token, or None when none is configured."""
    if not cfg.enabled:
        return None
    text = None
    if cfg.token_credential:
        text = credential(cfg.token_credential, "[web] token_credential", environ)
    elif cfg.token_file:
        text = _read(Path(cfg.token_file), "[web] token_file")
    if text is None:
        return None
    token = text.strip()
    if len(token) < 16:
        raise ConfigError("[web] token: the token must be at least 16 characters (it is "
                          "the only thing between the network and the halt button)")
    if any(c.isspace() or not c.isprintable() for c in token):
        raise ConfigError("[web] token: the token must be one line without spaces")
    return token


def alert_urls(cfg: AlertsCfg, environ: dict[str, str] | None = None) -> list[str]:
    """The configured URLs plus those in the credential (one per line, # comments)."""
    urls = list(cfg.urls)
    if cfg.url_credential:
        text = credential(cfg.url_credential, "[alerts] url_credential", environ)
        urls += [ln.strip() for ln in text.splitlines()
                 if ln.strip() and not ln.strip().startswith("#")]
    return urls
