"""Content-Security-Policy violations in a browser context, collected so a test can fail on them.

Each violation is reported twice by Chromium: a ``securitypolicyviolation`` event in the page,
handed to Python through an exposed function as it happens (so navigating away loses none),
and a console error ("Refused to ... because it violates ..."), caught for what fires where
no page script runs (workers, WebAssembly compilation).
"""

from __future__ import annotations

from typing import Any

_LISTEN = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.__passportCspViolation(
    `${event.effectiveDirective} blocked ${event.blockedURI || "inline"} on ${event.documentURI}` +
    ` (${event.sourceFile || "?"}:${event.lineNumber || 0}) ${event.sample || ""}`
  );
});
"""


class CspWatch:
    def __init__(self) -> None:
        self.violations: list[str] = []

    def attach(self, context: Any) -> Any:
        """Watch every page of this browser context; returns the context."""
        context.expose_function("__passportCspViolation", self._report)
        context.add_init_script(_LISTEN)
        context.on("console", self._console)
        return context

    def _report(self, description: str) -> None:
        self.violations.append(description)

    def _console(self, message: Any) -> None:
        text = message.text
        if "Content Security Policy" in text or "Content-Security-Policy" in text:
            self.violations.append(f"console: {text}")

    def assert_none(self) -> None:
        assert not self.violations, "Content-Security-Policy violations:\n" + "\n".join(self.violations)
