"""Partner Center credentials, from the environment only (never from specs, never written).

PARTNER_CENTER_ACCESS_TOKEN      a ready bearer token, used as it is
PARTNER_CENTER_CLIENT_ID         } app+user credentials of the secure application model:
PARTNER_CENTER_CLIENT_SECRET     } the refresh token is exchanged through MSAL for a token of
PARTNER_CENTER_REFRESH_TOKEN     } scope https://api.partnercenter.microsoft.com/user_impersonation
PARTNER_CENTER_TENANT_ID         the partner's tenant (the authority of that exchange)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ..errors import PermanentProviderError, ReconcileError, TemporaryProviderError
from ..i18n import _

SCOPE = "https://api.partnercenter.microsoft.com/user_impersonation"
AUTHORITY = "https://login.microsoftonline.com/{tenant}"
CREDENTIALS = (
    "PARTNER_CENTER_CLIENT_ID",
    "PARTNER_CENTER_CLIENT_SECRET",
    "PARTNER_CENTER_REFRESH_TOKEN",
)

TokenSource = Callable[[], str]


def token_source(env: Mapping[str, str], *, http_client: Any = None) -> TokenSource:
    """A function returning a bearer token: the given one, or a fresh one from MSAL each call
    (MSAL caches it until it expires). Says which variables are missing, never their values."""
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
    import msal  # imported on demand: only this path needs it

    refresh_token = env["PARTNER_CENTER_REFRESH_TOKEN"]
    app: Any = None

    def acquire() -> str:
        nonlocal app
        with _msal_errors():
            if app is None:  # built on first use: MSAL reads the authority's metadata
                app = msal.ConfidentialClientApplication(
                    env["PARTNER_CENTER_CLIENT_ID"],
                    client_credential=env["PARTNER_CENTER_CLIENT_SECRET"],
                    authority=AUTHORITY.format(tenant=env["PARTNER_CENTER_TENANT_ID"]),
                    http_client=http_client,
                )
            result = app.acquire_token_by_refresh_token(refresh_token, scopes=[SCOPE])
        token = result.get("access_token")
        if not token:
            # error and error_description come from Entra ID and carry no secrets.
            raise PermanentProviderError(
                _("could not get a Partner Center token: {}: {}").format(
                    result.get("error", "unknown_error"),
                    next(iter((result.get("error_description") or "").splitlines()), ""),
                ),
                code="auth",
            )
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
