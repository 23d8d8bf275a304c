"""Project-wide API plumbing: the exception handler (``settings.REST_FRAMEWORK``) and the schema's
authentication extension. No app imports this package: settings and ``PassportPortalConfig.ready`` wire it in.
"""
