"""``manage.py ca_keys``: list, rotate and retire the SSH CA's keys (the operator's tools)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sshca.errors import CaKeyStateError
from sshca.selectors import ca_key_list
from sshca.services import ca_keys_ensure, ca_retire, ca_rotate, host_ca_public_keys


class Command(BaseCommand):
    help = (
        "List the CA keys, rotate one type (a new active key; the old one stays trusted) or retire a trusted key. "
        "Every change is written to the Logbook as done by 'system'. --purpose host works on the host CA "
        "(the keys the CLI pins for the portal's SSH proxy) instead of the user CA."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--purpose", choices=["user", "host"], default="user", help="Which CA (default: user).")
        actions = parser.add_subparsers(dest="action", required=True)
        actions.add_parser("list", help="Show every key: type, state, fingerprint, created.")
        rotate = actions.add_parser("rotate", help="Make a new active key; the current one becomes trusted.")
        rotate.add_argument("--key-type", choices=["ed25519", "rsa"], required=True)
        retire = actions.add_parser("retire", help="Stop trusting a key the active one replaced.")
        retire.add_argument("fingerprint", help="SHA256:... as 'list' shows it.")
        retire.add_argument(
            "--force", action="store_true", help="Even while certificates it signed are valid (a compromised key)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        purpose = options["purpose"]
        name = "CA" if purpose == "user" else "host CA"
        try:
            if options["action"] == "rotate":
                key = ca_rotate(key_type=options["key_type"], purpose=purpose)
                self.stdout.write(self.style.SUCCESS(f"{key.key_type} {name} key {key.fingerprint} is active now."))
            elif options["action"] == "retire":
                key = ca_retire(fingerprint=options["fingerprint"], force=options["force"], purpose=purpose)
                self.stdout.write(self.style.SUCCESS(f"{key.key_type} {name} key {key.fingerprint} is retired."))
        except CaKeyStateError as error:
            raise CommandError(str(error)) from None
        if options["action"] == "list":
            if purpose == "host":
                host_ca_public_keys()
            else:
                ca_keys_ensure()
            for key in ca_key_list(purpose=purpose):
                self.stdout.write(f"{key.key_type:8} {key.state:8} {key.fingerprint}  {key.created_at:%Y-%m-%d %H:%M}")
