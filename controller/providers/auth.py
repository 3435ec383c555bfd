"""Partner Center credentials, from the environment only (never from specs, never written to
``state/``, never printed).

PARTNER_CENTER_ACCESS_TOKEN      a ready bearer token, used as it is
PARTNER_CENTER_CLIENT_ID         } app+user credentials of the secure application model:
PARTNER_CENTER_CLIENT_SECRET     } the refresh token is exchanged through MSAL for a token of
PARTNER_CENTER_REFRESH_TOKEN     } PARTNER_CENTER_SCOPE
PARTNER_CENTER_TENANT_ID         the partner's tenant (the authority of that exchange)
PARTNER_CENTER_AUTHORITY         the sign-in host (sovereign clouds); the tenant is appended
PARTNER_CENTER_SCOPE             the API's scope (sovereign clouds)
PARTNER_CENTER_TOKEN_CACHE       MSAL's token cache file (mode 0600, outside ``state/``)

Entra ID rotates the refresh token on every use: each exchange returns a new one, and the one
in the environment grows old (90 days without use and it expires: re-consent). MSAL's token
cache keeps the newest, so the cache is read before and written after every exchange, and the
cached account's refresh token is tried before the one in the environment.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import PermanentProviderError, ReconcileError, TemporaryProviderError
from ..fsutil import atomic_write
from ..i18n import _

SCOPE = "https://api.partnercenter.microsoft.com/user_impersonation"
AUTHORITY_HOST = "https://login.microsoftonline.com"
CREDENTIALS = (
    "PARTNER_CENTER_CLIENT_ID",
    "PARTNER_CENTER_CLIENT_SECRET",
    "PARTNER_CENTER_REFRESH_TOKEN",
)
CACHE_FILE_NAME = "msal-token-cache.json"

TokenSource = Callable[[], str]


def token_cache_path(env: Mapping[str, str]) -> Path:
    """Where MSAL's token cache is kept: PARTNER_CENTER_TOKEN_CACHE, else the user's cache
    directory (never the state directory, which teams may share or commit)."""
    given = env.get("PARTNER_CENTER_TOKEN_CACHE")
    if given:
        return Path(given).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("partner-reconciler")) / CACHE_FILE_NAME


def check_cache_outside(cache: Path, state_dir: Path) -> None:
    """Refuse a token cache inside the state directory: state may be shared, copied or
    committed, and the cache holds refresh tokens."""
    if cache.resolve().is_relative_to(state_dir.resolve()):
        raise ReconcileError(
            _(
                "PARTNER_CENTER_TOKEN_CACHE ({}) is inside the state directory {}: "
                "it holds refresh tokens, put it elsewhere"
            ).format(cache, state_dir)
        )


class TokenCacheFile:
    """MSAL's serializable token cache, kept in one file, written atomically with mode 0600."""

    def __init__(self, path: Path) -> None:
        import msal  # imported on demand: only this path needs it

        self.path = path
        self.cache = msal.SerializableTokenCache()
        self._lock = threading.Lock()
        try:
            self.cache.deserialize(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            pass
        except (OSError, ValueError):  # unreadable: start afresh, it is only a cache
            self.cache = msal.SerializableTokenCache()

    def save(self) -> None:
        with self._lock:
            if self.cache.has_state_changed:
                atomic_write(self.path, self.cache.serialize(), mode=0o600)
                self.cache.has_state_changed = False


def _failure(result: Mapping[str, Any]) -> PermanentProviderError:
    # error and error_description come from Entra ID and carry no secrets.
    error = str(result.get("error", "unknown_error"))
    description = next(iter(str(result.get("error_description") or "").splitlines()), "")
    message = _("could not get a Partner Center token: {}: {}").format(error, description)
    if error == "invalid_grant":
        message += _(
            " (the refresh token expired or was revoked: it lasts 90 days without use; "
            "run the consent of the secure application model again and set "
            "PARTNER_CENTER_REFRESH_TOKEN)"
        )
    return PermanentProviderError(message, code="auth")


def token_source(
    env: Mapping[str, str], *, http_client: Any = None, state_dir: Path | None = None
) -> TokenSource:
    """A function returning a bearer token: the given one, or one from MSAL (its cache first,
    then the refresh token). Says which variables are missing, never their values."""
    ready = env.get("PARTNER_CENTER_ACCESS_TOKEN")
    if ready:
        return lambda: ready
    missing = [name for name in (*CREDENTIALS, "PARTNER_CENTER_TENANT_ID") if not env.get(name)]
    if missing:
        raise ReconcileError(
            _(
                "the partner-center provider needs PARTNER_CENTER_ACCESS_TOKEN, or {}; missing: {}"
            ).format(", ".join(CREDENTIALS), ", ".join(missing))
        )
    import msal

    cache_file = TokenCacheFile(token_cache_path(env))
    if state_dir is not None:
        check_cache_outside(cache_file.path, state_dir)
    host = (env.get("PARTNER_CENTER_AUTHORITY") or AUTHORITY_HOST).rstrip("/")
    scope = env.get("PARTNER_CENTER_SCOPE") or SCOPE
    refresh_token = env["PARTNER_CENTER_REFRESH_TOKEN"]
    app: Any = None

    def acquire() -> str:
        nonlocal app
        with _msal_errors():
            if app is None:  # built on first use: MSAL reads the authority's metadata
                app = msal.ConfidentialClientApplication(
                    env["PARTNER_CENTER_CLIENT_ID"],
                    client_credential=env["PARTNER_CENTER_CLIENT_SECRET"],
                    authority=f"{host}/{env['PARTNER_CENTER_TENANT_ID']}",
                    token_cache=cache_file.cache,
                    http_client=http_client,
                )
            result: Mapping[str, Any] | None = None
            for account in app.get_accounts():  # the newest refresh token, rotated last run
                result = app.acquire_token_silent([scope], account=account)
                if result and result.get("access_token"):
                    break
            if not result or not result.get("access_token"):
                result = app.acquire_token_by_refresh_token(refresh_token, scopes=[scope])
        cache_file.save()
        token = result.get("access_token")
        if not token:
            raise _failure(result)
        return str(token)

    return acquire


@contextmanager
def _msal_errors() -> Iterator[None]:
    """MSAL's own failures as one-line provider errors: the network (requests' errors are
    OSErrors) is worth retrying; anything else (a refused authority, a bad answer) is not. No
    secret is in these messages: MSAL's exceptions name endpoints and errors only."""
    try:
        yield
    except OSError as exc:
        raise TemporaryProviderError(
            _("could not reach Microsoft Entra ID for a token: {}").format(type(exc).__name__)
        ) from exc
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        first = next(iter(str(exc).splitlines()), "")[:300]
        raise PermanentProviderError(
            _("could not get a Partner Center token: {}: {}").format(type(exc).__name__, first),
            code="auth",
        ) from exc
