"""AWS error codes devcloud raises; moto serialises them like the real service would."""

from __future__ import annotations

from moto.core.exceptions import ServiceException


class AwsError(ServiceException):
    """An error whose ``code`` is an exception shape of the service's botocore model."""

    def __init__(self, message: str) -> None:
        super().__init__(self.code, message)


class InvalidInstanceId(AwsError):
    code = "InvalidInstanceId"


class InvalidDocument(AwsError):
    code = "InvalidDocument"


class InvalidParameters(AwsError):
    code = "InvalidParameters"


class InvalidCommandId(AwsError):
    code = "InvalidCommandId"


class InvocationDoesNotExist(AwsError):
    code = "InvocationDoesNotExist"


class InvalidPluginName(AwsError):
    code = "InvalidPluginName"


class InvalidFilterKey(AwsError):
    code = "InvalidFilterKey"


class InvalidFilterValue(AwsError):
    code = "InvalidFilterValue"


class InvalidNextToken(AwsError):
    code = "InvalidNextToken"


class TargetNotConnected(AwsError):
    code = "TargetNotConnected"


class DoesNotExist(AwsError):
    code = "DoesNotExistException"


class SsmValidation(AwsError):
    code = "ValidationException"


class InvalidKeyId(AwsError):
    code = "InvalidKeyId"


class NoSuchEntity(AwsError):
    code = "NoSuchEntity"


class InvalidInput(AwsError):
    code = "InvalidInput"


class MalformedPolicyDocument(AwsError):
    code = "MalformedPolicyDocument"


class InvalidParameterValue(AwsError):
    code = "InvalidParameterValue"
