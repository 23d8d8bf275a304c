"""The people the demo IdPs sign in, and the attributes their assertions carry."""

from __future__ import annotations

from dataclasses import dataclass, field

from devcloud.idp.messages import AWS_ROLE_ATTRIBUTE, UNSPECIFIED


@dataclass
class Person:
    name_id: str
    email: str
    first_name: str
    last_name: str
    groups: list[str] = field(default_factory=list)
    # AWS SAML federation's Role attribute: "role ARN,provider ARN", one value per account.
    aws_roles: list[str] = field(default_factory=list)
    # The NameID's Format (SAML core 8.3): unspecified, as the demo IdPs send it.
    name_id_format: str = UNSPECIFIED

    def attributes(self) -> dict[str, list[str]]:
        attributes = {
            "email": [self.email],
            "givenName": [self.first_name],
            "sn": [self.last_name],
            "groups": list(self.groups),
        }
        if self.aws_roles:
            attributes[AWS_ROLE_ATTRIBUTE] = list(self.aws_roles)
        return attributes


def demo_people(store: str, account_ids: list[str], roles: dict[str, str] | None = None) -> dict[str, Person]:
    """The demo people of one store; ``roles`` (account id -> "role ARN,provider ARN") is what
    devcloud seeded for this store's people, sent as the AWS Role attribute so Passport can
    ask IAM about them."""
    known = roles or {}
    aws_roles = [known[a] for a in account_ids if a in known]
    if store == "customer":
        return {
            "carol": Person(
                "carol@customer.example",
                "carol@customer.example",
                "Carol",
                "Customer",
                [f"passport:{a}:admin" for a in account_ids] + [f"passport:{a}:approver" for a in account_ids],
                aws_roles,
            ),
            "cora": Person(
                "cora@customer.example",
                "cora@customer.example",
                "Cora",
                "Observer",
                [f"passport:{a}:observer" for a in account_ids],
            ),
        }
    return {
        "sam": Person(
            "sam@support.passport.test",
            "sam@support.passport.test",
            "Sam",
            "Support",
            [f"passport:{a}:admin" for a in account_ids],
            aws_roles,
        ),
    }
