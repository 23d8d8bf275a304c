"""Output shapes shared by several API endpoints. Pure presentation: no rules, no queries.

Values the view works out (``actions`` of a request, ``problem`` of an instance) are set on
the object by the view before serialising; the serialisers only read them.
"""

from __future__ import annotations

from datetime import timedelta

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import AwsAccount, Membership
from requests_app.models import EndReason, GrantStatus, Instance, RequestStatus

REQUEST_ACTIONS = ("approve", "reject", "cancel", "extend", "complete")


@extend_schema_field(OpenApiTypes.INT)
class MinutesField(serializers.Field):
    """A duration shown as whole minutes."""

    def __init__(self, **kwargs: object) -> None:
        kwargs["read_only"] = True
        super().__init__(**kwargs)  # type: ignore[arg-type]

    def to_representation(self, value: timedelta) -> int:
        return int(value.total_seconds() // 60)


_FORWARD_PORTS_HELP = "Remote ports sessions may reach on the account's instances: 22, 3389 and those its admin added."


_CLI_SESSIONS_HELP = (
    "How the CLI's ssh sessions reach the account's instances: `record` through the portal's recording proxy "
    "(the CLI pins the portal's host CA), `direct` over the Session Manager data channel (not recorded)."
)


class AccountRefOutput(serializers.Serializer):
    account_id = serializers.CharField()
    name = serializers.CharField()
    forward_ports = serializers.ListField(child=serializers.IntegerField(), help_text=_FORWARD_PORTS_HELP)
    cli_sessions = serializers.ChoiceField(choices=AwsAccount.CliSessions.choices, help_text=_CLI_SESSIONS_HELP)
    moderated = serializers.BooleanField(
        source="require_session_join",
        help_text="Moderated sessions: nothing reaches the instances unless an approver watches. Shells, commands "
        "and file transfers through the portal wait for one; port forwards, Remote Desktop, AWS credentials and "
        "direct CLI sessions are refused.",
    )


class AccountOutput(serializers.Serializer):
    account_id = serializers.CharField()
    name = serializers.CharField()
    regions = serializers.ListField(child=serializers.CharField())
    role = serializers.ChoiceField(choices=Membership.Role.choices)
    role_label = serializers.CharField()
    can_request = serializers.BooleanField(help_text="The person holds the Admin role, the only one that may ask.")
    can_approve = serializers.BooleanField()
    inventory_synced_at = serializers.DateTimeField(allow_null=True)
    forward_ports = serializers.ListField(child=serializers.IntegerField(), help_text=_FORWARD_PORTS_HELP)
    forward_destinations = serializers.ListField(
        child=serializers.CharField(),
        source="forward_destination_list",
        help_text="host:port pairs beyond the instances that ssh -L may reach through them; a request "
        "made now records these.",
    )
    cli_sessions = serializers.ChoiceField(choices=AwsAccount.CliSessions.choices, help_text=_CLI_SESSIONS_HELP)


_NAME_IS_HOST_ALIAS_HELP = (
    "Whether `name` may be an ssh Host alias (passport_cli.names.HOST_ALIAS_RE); "
    "when not, it is only shown (escaped), and the instance id is the alias."
)


class InstanceOutput(serializers.Serializer):
    instance_id = serializers.CharField()
    name = serializers.CharField()
    name_is_host_alias = serializers.BooleanField(help_text=_NAME_IS_HOST_ALIAS_HELP)
    region = serializers.CharField()
    platform = serializers.ChoiceField(choices=Instance.Platform.choices)
    platform_name = serializers.CharField()
    state = serializers.CharField()
    private_ip = serializers.CharField()
    ping_status = serializers.CharField()
    agent_version = serializers.CharField()
    is_domain_controller = serializers.BooleanField()
    available = serializers.BooleanField(help_text="Passport can reach it now; if not, `problem` says why.")
    problem = serializers.CharField(allow_null=True)


class SyncOutput(serializers.Serializer):
    account_id = serializers.CharField()
    seen = serializers.IntegerField()
    added = serializers.IntegerField()
    gone = serializers.IntegerField()
    # Shadows Serializer.errors only for type checkers: the metaclass moves declared fields into _declared_fields.
    errors = serializers.ListField(  # type: ignore[assignment]
        child=serializers.CharField(), help_text="Regions that failed keep their old rows."
    )


class GrantOutput(serializers.Serializer):
    instance_id = serializers.CharField(source="instance.instance_id")
    name = serializers.CharField(source="instance.name")
    name_is_host_alias = serializers.BooleanField(
        source="instance.name_is_host_alias", help_text=_NAME_IS_HOST_ALIAS_HELP
    )
    platform = serializers.ChoiceField(
        choices=Instance.Platform.choices,
        help_text=(
            "The instance's platform when the request was made: the kind of user made and removed there, "
            "and what Administrator rights mean. Fixed then; `instances` says what the inventory says now."
        ),
    )
    domain_controller = serializers.BooleanField(
        source="domain_account",
        help_text=(
            "Windows: the instance was a domain controller when the request was made, so the user is a domain "
            "account and Administrator rights mean Domain Admins. Fixed then; `instances` says what the tag says now."
        ),
    )
    username = serializers.CharField()
    status = serializers.ChoiceField(choices=GrantStatus.choices)
    attempts = serializers.IntegerField()
    last_error = serializers.CharField()
    ready_at = serializers.DateTimeField(allow_null=True)
    removed_at = serializers.DateTimeField(allow_null=True)


class AccessRequestOutput(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=RequestStatus.choices)
    status_label = serializers.CharField(source="get_status_display")
    account = AccountRefOutput()
    requester = serializers.CharField(source="requester.username")
    reason = serializers.CharField()
    ticket = serializers.CharField()
    admin_rights = serializers.BooleanField(
        help_text="Linux: sudo; Windows: local Administrators, or the domain's admin group on a domain controller."
    )
    duration_minutes = MinutesField(source="duration")
    extended_minutes = MinutesField(source="extended_by")
    created_at = serializers.DateTimeField()
    decided_by = serializers.CharField(source="decided_by.username", allow_null=True)
    decided_at = serializers.DateTimeField(allow_null=True)
    decision_note = serializers.CharField()
    activated_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateTimeField(allow_null=True)
    end_reason = serializers.ChoiceField(choices=[("", "Not ended"), *EndReason.choices])
    forward_destinations = serializers.ListField(
        child=serializers.CharField(),
        source="approved_destinations",
        help_text="host:port pairs beyond the instances that ssh -L reaches through them, as the account "
        "listed them when the request was made: what approval covers. A later addition on the account "
        "is not among them.",
    )
    forward_destinations_in_force = serializers.ListField(
        child=serializers.CharField(),
        source="destinations_in_force",
        help_text="Those of forward_destinations the account still lists: what ssh -L reaches now.",
    )
    grants = GrantOutput(many=True, source="grants.all")
    actions = serializers.ListField(
        child=serializers.ChoiceField(choices=REQUEST_ACTIONS),
        help_text="What the person asking may do to the request now.",
    )
