#!/bin/sh
# Installs the passport CLI from @@PORTAL_URL@@ (served by the portal at /cli/install.sh):
#   curl -sL @@PORTAL_URL@@/cli/install.sh | sudo sh -s
# It makes a virtualenv, downloads the newest published wheel and its signature, checks the
# Ed25519 signature against the release keys below BEFORE installing anything, installs the
# wheel there with pip and links `passport` onto the PATH.
#
# Environment (all optional):
#   PASSPORT_CLI_PREFIX      the virtualenv (default /opt/passport-cli as root, else ~/.local/share/passport-cli)
#   PASSPORT_CLI_BIN_DIR     where `passport` is linked (default /usr/local/bin as root, else ~/.local/bin)
#   PASSPORT_CLI_PYTHON      the Python to use (3.11 or newer; default: the first of python3, python3.13, 3.12, 3.11)
#   PASSPORT_CLI_VERIFY_WITH openssl or python: how to check the signature (default: openssl 3 when present, else
#                            python's cryptography package, installed alone into a scratch virtualenv)
#   PASSPORT_CLI_SKIP_SIGNATURE_CHECK=yes  install WITHOUT checking the signature (only when neither check can run)
#   pip's own PIP_INDEX_URL, PIP_FIND_LINKS, PIP_NO_INDEX, ... are honoured.
# Exit codes: 0 installed, 1 error, 2 no Python 3.11 or newer, 3 the signature is refused or cannot be checked.
set -eu

# Run from wherever the caller stands (/tmp, say, where anyone may leave files), and often as root:
# nothing there may run. So commands are looked up in absolute PATH entries only (an empty or
# relative entry means the current directory, as passport_cli/executables.py refuses too), and
# Python never puts the current directory (or a script's) first on sys.path (-P, PYTHONSAFEPATH:
# 3.11 and newer, which is required anyway); the work happens in a private directory.
absolute_path_entries() (
    kept=
    IFS=:
    set -f
    for entry in ${PATH:-}; do
        case "$entry" in /*) kept=${kept:+$kept:}$entry ;; esac
    done
    # An empty PATH would be the current directory again.
    printf '%s\n' "${kept:-/usr/bin:/bin}"
)
PATH=$(absolute_path_entries)
export PATH
PYTHONSAFEPATH=1
export PYTHONSAFEPATH

PORTAL_URL='@@PORTAL_URL@@'
VERSION='@@VERSION@@'
WHEEL='@@WHEEL@@'
# The release keys this portal trusts: "fingerprint base64-of-the-raw-Ed25519-public-key", one a line.
TRUSTED_KEYS='@@TRUSTED_KEYS@@'

say() { printf 'passport install: %s\n' "$*" >&2; }
die() {
    code=$1
    shift
    say "$*"
    exit "$code"
}

# Before 3.11, -P itself is refused: that Python is not ok either.
python_ok() { "$1" -P -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1; }

PYTHON=
if [ -n "${PASSPORT_CLI_PYTHON:-}" ]; then
    # As a full path, since the work happens in another directory: a bare name is looked up on
    # the (absolute) PATH, a relative path is the caller's.
    case "$PASSPORT_CLI_PYTHON" in
    /*) PYTHON=$PASSPORT_CLI_PYTHON ;;
    */*) PYTHON=$(pwd)/$PASSPORT_CLI_PYTHON ;;
    *) PYTHON=$(command -v "$PASSPORT_CLI_PYTHON" 2>/dev/null) || PYTHON=$PASSPORT_CLI_PYTHON ;;
    esac
    python_ok "$PYTHON" || die 2 "PASSPORT_CLI_PYTHON=$PASSPORT_CLI_PYTHON is not Python 3.11 or newer."
else
    for candidate in python3 python3.13 python3.12 python3.11; do
        if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
            PYTHON=$(command -v "$candidate")
            break
        fi
    done
fi
[ -n "$PYTHON" ] || die 2 "the passport CLI needs Python 3.11 or newer (python3): install it, or set PASSPORT_CLI_PYTHON to one."

if [ "$(id -u)" = 0 ]; then
    PREFIX=${PASSPORT_CLI_PREFIX:-/opt/passport-cli}
    BIN_DIR=${PASSPORT_CLI_BIN_DIR:-/usr/local/bin}
else
    PREFIX=${PASSPORT_CLI_PREFIX:-${HOME:?HOME is not set}/.local/share/passport-cli}
    BIN_DIR=${PASSPORT_CLI_BIN_DIR:-$HOME/.local/bin}
fi
case "$PREFIX" in /*) ;; *) die 1 "PASSPORT_CLI_PREFIX must be an absolute path, not $PREFIX." ;; esac
case "$BIN_DIR" in /*) ;; *) die 1 "PASSPORT_CLI_BIN_DIR must be an absolute path, not $BIN_DIR." ;; esac
if [ -e "$PREFIX" ] && [ ! -f "$PREFIX/pyvenv.cfg" ] && [ -n "$(ls -A "$PREFIX" 2>/dev/null)" ]; then
    die 1 "$PREFIX exists and is not a virtualenv: choose another PASSPORT_CLI_PREFIX."
fi
if [ -e "$BIN_DIR/passport" ] && [ ! -L "$BIN_DIR/passport" ]; then
    die 1 "$BIN_DIR/passport exists and is not a link: remove it or set PASSPORT_CLI_BIN_DIR."
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
cd "$WORK"

fetch() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then
        wget -q -O "$2" "$1"
    else
        "$PYTHON" -P -c 'import shutil, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=60) as r, open(sys.argv[2], "wb") as f: shutil.copyfileobj(r, f)' "$1" "$2"
    fi
}

say "passport $VERSION from $PORTAL_URL"
fetch "$PORTAL_URL/cli/releases/$WHEEL" "$WORK/$WHEEL" || die 1 "could not download $PORTAL_URL/cli/releases/$WHEEL"
fetch "$PORTAL_URL/cli/releases/$WHEEL.sig" "$WORK/$WHEEL.sig" || die 3 "could not download the signature $PORTAL_URL/cli/releases/$WHEEL.sig: nothing installed."

cat >"$WORK/prepare.py" <<'PASSPORT_PREPARE_PY'
@@PREPARE_PY@@
PASSPORT_PREPARE_PY
cat >"$WORK/verify.py" <<'PASSPORT_VERIFY_PY'
@@VERIFY_PY@@
PASSPORT_VERIFY_PY

# 0: verified; 1: the signature is wrong; 2: this way cannot check it.
verify_openssl() {
    command -v openssl >/dev/null 2>&1 || return 2
    case "$(openssl version 2>/dev/null)" in "OpenSSL "[3-9]*) ;; *) return 2 ;; esac
    verdict=$(openssl pkeyutl -verify -pubin -inkey "$WORK/key.pem" -rawin -in "$WORK/message" -sigfile "$WORK/signature" 2>&1) && return 0
    case "$verdict" in *"Signature Verification Failure"*) return 1 ;; esac
    return 2
}

verify_python() {
    "$PYTHON" -P -m venv "$WORK/verify-venv" >/dev/null 2>&1 || return 2
    if ! "$WORK/verify-venv/bin/python" -P -c 'import cryptography' >/dev/null 2>&1; then
        "$WORK/verify-venv/bin/python" -P -m pip install --disable-pip-version-check --quiet 'cryptography>=42' >&2 || return 2
    fi
    "$WORK/verify-venv/bin/python" -P "$WORK/verify.py" "$WORK" && return 0
    [ $? -eq 1 ] && return 1
    return 2
}

skip=${PASSPORT_CLI_SKIP_SIGNATURE_CHECK:-}
if [ "$skip" = yes ]; then
    say "WARNING: PASSPORT_CLI_SKIP_SIGNATURE_CHECK=yes: installing $WHEEL WITHOUT checking its signature."
else
    KEY=$("$PYTHON" -P "$WORK/prepare.py" "$WORK/$WHEEL" "$WORK/$WHEEL.sig" "$WHEEL" "$VERSION" "$WORK" "$TRUSTED_KEYS") ||
        die 3 "nothing installed."
    method=${PASSPORT_CLI_VERIFY_WITH:-auto}
    case "$method" in auto | openssl | python) ;; *) die 1 "PASSPORT_CLI_VERIFY_WITH must be openssl or python." ;; esac
    outcome=2
    if [ "$method" != python ]; then
        if verify_openssl; then outcome=0; else outcome=$?; fi
    fi
    if [ "$outcome" -eq 2 ] && [ "$method" != openssl ]; then
        if verify_python; then outcome=0; else outcome=$?; fi
    fi
    case "$outcome" in
    0) ;;
    1) die 3 "refused: the signature on $WHEEL does not verify with release key $KEY: nothing installed." ;;
    *) die 3 "cannot check the signature: that needs openssl 3, or Python's cryptography package (installed into a scratch virtualenv with pip, which failed). Nothing installed. To install without the check, set PASSPORT_CLI_SKIP_SIGNATURE_CHECK=yes." ;;
    esac
    say "the signature by release key $KEY verifies"
fi

created=no
if [ ! -f "$PREFIX/pyvenv.cfg" ]; then
    "$PYTHON" -P -m venv "$PREFIX" || die 1 "could not make a virtualenv at $PREFIX (on Debian or Ubuntu: apt-get install python3-venv)."
    created=yes
fi
if ! "$PREFIX/bin/python" -P -m pip install --disable-pip-version-check --quiet "$WORK/$WHEEL" >&2; then
    [ "$created" = no ] || rm -rf "$PREFIX"
    die 1 "pip could not install $WHEEL into $PREFIX."
fi
mkdir -p "$BIN_DIR"
ln -sf "$PREFIX/bin/passport" "$BIN_DIR/passport"
say "installed into $PREFIX; linked $BIN_DIR/passport"
case ":${PATH:-}:" in *":$BIN_DIR:"*) ;; *) say "add $BIN_DIR to your PATH to run passport by name." ;; esac
"$BIN_DIR/passport" version
