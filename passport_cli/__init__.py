"""The `passport` command-line tool: talks to the Passport portal's REST API. No Django here."""

__version__ = "0.1.0"
