"""devcloud: an offline stand-in for the AWS that Passport uses.

moto's server plus what moto lacks (SSM managed instances, real Run Command on local
hosts, Session Manager sessions, IAM policy simulation, enforced session policies of
assumed roles). The product never imports this package; it only talks boto3 to the
endpoint (``AWS_ENDPOINT_URL``).

Entry points: ``devcloud.server.DevCloud``, ``devcloud.seed.seed_demo`` and
``python -m devcloud serve``.
"""
