"""Static files and the files Passport writes; terminal.py and portal.py add the recordings and CLI wheels storages."""

from __future__ import annotations

from passport_portal.settings.environment import BASE_DIR, DEBUG, PRODUCTION, VAR_DIR

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [
    BASE_DIR / "static",
    # Pinned npm packages installed by scripts/setup (package.json), served as they are.
    ("vendor/htmx", BASE_DIR / "node_modules" / "htmx.org" / "dist"),
    ("vendor/xterm", BASE_DIR / "node_modules" / "@xterm" / "xterm"),
    ("vendor/xterm-addon-fit", BASE_DIR / "node_modules" / "@xterm" / "addon-fit" / "lib"),
    ("vendor/asciinema-player", BASE_DIR / "node_modules" / "asciinema-player" / "dist" / "bundle"),
]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "passport_portal.staticfiles.PickedFilesFinder",
]
# Packages served only in part (passport_portal/staticfiles.py): Swagger UI for /api/docs/, without
# the package's own demo and OAuth2 pages.
VENDOR_STATIC_FILES = {
    "vendor/swagger-ui": (
        BASE_DIR / "node_modules" / "swagger-ui-dist",
        ["swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui.css.map", "favicon-32x32.png"],
    ),
}
STORAGES: dict[str, dict[str, object]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage",
        # Public files, readable by whatever serves them: not the private modes below.
        "OPTIONS": {"file_permissions_mode": 0o644, "directory_permissions_mode": 0o755},
    },
}
MEDIA_ROOT = VAR_DIR / "media"
# Files Passport writes to disk (local recordings, CLI wheels) are its own and its group's:
# Django's default, 0o644, makes every recording readable by every user of the host whatever
# the umask. The static files keep their own modes above.
FILE_UPLOAD_PERMISSIONS = 0o640
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o750
# Outside production, serve static files straight from the apps and node_modules.
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = DEBUG
