from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "People and AWS accounts"

    def ready(self) -> None:
        from accounts import (
            change_trail,
            change_trail_bulk,
            change_trail_joins,
            signals,  # noqa: F401  (connects the Logbook receivers)
        )
        from accounts.saml import (
            checks,  # noqa: F401  (registers the IdP settings check)
            receivers,  # noqa: F401  (an IdP withdrawn ends what it signed in)
        )
        from accounts.selectors import account_names
        from audit.account_names import account_names_source_set

        # Last: a save's other receivers do their work (and take their locks) before its entry.
        change_trail.connect()
        change_trail_bulk.connect()
        change_trail_joins.connect()
        # The Logbook sits below accounts and stores bare ids; tell its review page how to name them.
        account_names_source_set(source=account_names)
