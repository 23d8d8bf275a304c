"""Session Manager: sessions started (with the portal's role or scoped credentials), listed and ended."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from fleet.aws.clients import AwsClients, aws_error_code
from fleet.aws.paging import token_pages
from fleet.interface import FleetError, ScopedCredentials


class SessionsMixin(AwsClients):
    def start_session(
        self,
        instance_id: str,
        region: str,
        document: str,
        parameters: dict[str, list[str]] | None = None,
        *,
        credentials: ScopedCredentials | None = None,
    ) -> dict[str, str]:
        """StartSession: ``SessionId``, ``TokenValue`` and ``StreamUrl`` for the data channel.

        With ``credentials`` (from ``assume_scoped``) the call is made with them instead of the
        portal's full role, so AWS itself refuses any other instance or document.
        """
        try:
            response = self._client("ssm", region, credentials).start_session(
                Target=instance_id, DocumentName=document, Parameters=parameters or {}
            )
        except (ClientError, BotoCoreError) as exc:
            raise FleetError(f"StartSession on {instance_id} failed: {exc}", code=aws_error_code(exc)) from exc
        return {key: response[key] for key in ("SessionId", "TokenValue", "StreamUrl")}

    def active_sessions(self, instance_id: str, region: str) -> list[dict[str, str]]:
        """The Session Manager sessions open on one instance now: ``SessionId``, ``Owner`` and
        ``DocumentName`` each."""
        found: list[dict[str, str]] = []
        try:
            pages = token_pages(
                self._client("ssm", region).describe_sessions,
                what=f"DescribeSessions on {instance_id}",
                State="Active",
                Filters=[{"key": "Target", "value": instance_id}],
            )
            for page in pages:
                found += [
                    {
                        "SessionId": item["SessionId"],
                        "Owner": item.get("Owner", ""),
                        "DocumentName": item.get("DocumentName", ""),
                    }
                    for item in page.get("Sessions", [])
                ]
            return found
        except (ClientError, BotoCoreError) as exc:
            raise FleetError(f"DescribeSessions on {instance_id} failed: {exc}", code=aws_error_code(exc)) from exc

    def terminate_session(self, session_id: str, region: str) -> None:
        """TerminateSession; ending a session that has already ended is not an error."""
        try:
            self._client("ssm", region).terminate_session(SessionId=session_id)
        except (ClientError, BotoCoreError) as exc:
            raise FleetError(f"TerminateSession {session_id} failed: {exc}", code=aws_error_code(exc)) from exc
