# Installs the passport CLI on Windows from @@PORTAL_URL@@ (served by the portal at /cli/install.ps1):
#   powershell -ExecutionPolicy Bypass -File .\install.ps1
# The same steps as install.sh: find Python 3.11 or newer, download the newest wheel and its
# signature, check the Ed25519 signature against the release keys below (Python's cryptography
# package, installed alone into a scratch virtualenv) BEFORE installing anything, install the
# wheel into a virtualenv with pip, put its Scripts folder on your PATH and run `passport version`.
#
# Environment (all optional): PASSPORT_CLI_PREFIX (default %LOCALAPPDATA%\passport-cli),
# PASSPORT_CLI_PYTHON (the python.exe to use), PASSPORT_CLI_SKIP_SIGNATURE_CHECK=yes (install
# WITHOUT the check); pip's own PIP_* variables are honoured.
# Exit codes: 0 installed, 1 error, 2 no Python 3.11 or newer, 3 the signature is refused or cannot be checked.
# Not 'Stop': Windows PowerShell 5 would turn a native command's stderr into a terminating error.
# Each cmdlet that must not fail says -ErrorAction Stop; each native command's exit code is checked.
$ErrorActionPreference = 'Continue'
$ProgressPreference = 'SilentlyContinue'

$PortalUrl = '@@PORTAL_URL@@'
$Version = '@@VERSION@@'
$Wheel = '@@WHEEL@@'
$TrustedKeys = '@@TRUSTED_KEYS@@'

function Fail([int]$Code, [string]$Message) {
    [Console]::Error.WriteLine("passport install: $Message")
    exit $Code
}

# Every Python runs with -P (3.11 and newer; an older one refuses it, so is not taken here): the
# current directory, or a script's, is never put first on sys.path, where a planted venv.py, pip
# or shutil.py would run in place of the standard library's.
function Test-Python([string[]]$Command) {
    try {
        $exe, $rest = $Command
        & $exe @rest -P -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>$null | Out-Null
        return $LASTEXITCODE -eq 0
    } catch { return $false }
}

$Python = $null
if ($env:PASSPORT_CLI_PYTHON) {
    # A relative path is the caller's: made full, since the work happens in another directory.
    $Given = $env:PASSPORT_CLI_PYTHON
    if (($Given -match '[\\/]') -and -not [System.IO.Path]::IsPathRooted($Given)) { $Given = Join-Path $PWD.ProviderPath $Given }
    if (-not (Test-Python @($Given))) { Fail 2 "PASSPORT_CLI_PYTHON=$env:PASSPORT_CLI_PYTHON is not Python 3.11 or newer." }
    $Python = @($Given)
} else {
    foreach ($candidate in @(@('py', '-3'), @('python'), @('python3'))) {
        if (Test-Python $candidate) { $Python = $candidate; break }
    }
}
if (-not $Python) { Fail 2 'the passport CLI needs Python 3.11 or newer: install it from python.org, or set PASSPORT_CLI_PYTHON to one.' }
$PyExe, $PyArgs = $Python
if (-not $PyArgs) { $PyArgs = @() }

$Prefix = if ($env:PASSPORT_CLI_PREFIX) { $env:PASSPORT_CLI_PREFIX } else { Join-Path $env:LOCALAPPDATA 'passport-cli' }
if ((Test-Path -LiteralPath $Prefix) -and -not (Test-Path -LiteralPath (Join-Path $Prefix 'pyvenv.cfg')) -and (Get-ChildItem -LiteralPath $Prefix -Force | Select-Object -First 1)) {
    Fail 1 "$Prefix exists and is not a virtualenv: choose another PASSPORT_CLI_PREFIX."
}

$Work = Join-Path ([System.IO.Path]::GetTempPath()) ('passport-install-' + [guid]::NewGuid())
New-Item -ItemType Directory -Path $Work -ErrorAction Stop | Out-Null
# Work in that private directory, not wherever the caller stands (a shared folder may hold a venv.py
# or a pip folder), and keep Python from putting the current directory on sys.path in its child
# processes too. Both are put back afterwards: `irm | iex` runs this in the caller's own session.
$SafePathBefore = $env:PYTHONSAFEPATH
Push-Location -LiteralPath $Work -ErrorAction Stop
$env:PYTHONSAFEPATH = '1'
try {
    Write-Host "passport install: passport $Version from $PortalUrl"
    $WheelPath = Join-Path $Work $Wheel
    try {
        Invoke-WebRequest -UseBasicParsing -Uri "$PortalUrl/cli/releases/$Wheel" -OutFile $WheelPath -ErrorAction Stop
        Invoke-WebRequest -UseBasicParsing -Uri "$PortalUrl/cli/releases/$Wheel.sig" -OutFile "$WheelPath.sig" -ErrorAction Stop
    } catch { Fail 1 "could not download $Wheel or its signature from ${PortalUrl}: $_" }

    if ($env:PASSPORT_CLI_SKIP_SIGNATURE_CHECK -eq 'yes') {
        Write-Warning "PASSPORT_CLI_SKIP_SIGNATURE_CHECK=yes: installing $Wheel WITHOUT checking its signature."
    } else {
        Set-Content -LiteralPath (Join-Path $Work 'prepare.py') -Encoding UTF8 -ErrorAction Stop -Value @'
@@PREPARE_PY@@
'@
        Set-Content -LiteralPath (Join-Path $Work 'verify.py') -Encoding UTF8 -ErrorAction Stop -Value @'
@@VERIFY_PY@@
'@
        $Key = & $PyExe @PyArgs -P (Join-Path $Work 'prepare.py') $WheelPath "$WheelPath.sig" $Wheel $Version $Work $TrustedKeys
        if ($LASTEXITCODE -ne 0) { Fail 3 'nothing installed.' }
        $VerifyVenv = Join-Path $Work 'verify-venv'
        & $PyExe @PyArgs -P -m venv $VerifyVenv
        if ($LASTEXITCODE -ne 0) { Fail 3 'cannot check the signature: could not make a scratch virtualenv. Nothing installed.' }
        $VerifyPython = Join-Path $VerifyVenv 'Scripts\python.exe'
        & $VerifyPython -P -c 'import cryptography' 2>$null
        if ($LASTEXITCODE -ne 0) {
            & $VerifyPython -P -m pip install --disable-pip-version-check --quiet 'cryptography>=42'
            if ($LASTEXITCODE -ne 0) { Fail 3 'cannot check the signature: pip could not install the cryptography package. Nothing installed. To install without the check, set PASSPORT_CLI_SKIP_SIGNATURE_CHECK=yes.' }
        }
        & $VerifyPython -P (Join-Path $Work 'verify.py') $Work
        if ($LASTEXITCODE -eq 1) { Fail 3 "refused: the signature on $Wheel does not verify with release key ${Key}: nothing installed." }
        if ($LASTEXITCODE -ne 0) { Fail 3 'cannot check the signature. Nothing installed.' }
        Write-Host "passport install: the signature by release key $Key verifies"
    }

    $Created = $false
    if (-not (Test-Path -LiteralPath (Join-Path $Prefix 'pyvenv.cfg'))) {
        & $PyExe @PyArgs -P -m venv $Prefix
        if ($LASTEXITCODE -ne 0) { Fail 1 "could not make a virtualenv at $Prefix." }
        $Created = $true
    }
    & (Join-Path $Prefix 'Scripts\python.exe') -P -m pip install --disable-pip-version-check --quiet $WheelPath
    if ($LASTEXITCODE -ne 0) {
        if ($Created) { Remove-Item -LiteralPath $Prefix -Recurse -Force }
        Fail 1 "pip could not install $Wheel into $Prefix."
    }
    $Scripts = Join-Path $Prefix 'Scripts'
    $UserPath = [Environment]::GetEnvironmentVariable('Path', 'User')
    if (-not (($UserPath -split ';') -contains $Scripts)) {
        [Environment]::SetEnvironmentVariable('Path', (@($UserPath, $Scripts) | Where-Object { $_ }) -join ';', 'User')
        Write-Host "passport install: added $Scripts to your PATH: open a new terminal to run passport by name."
    }
    $env:Path = "$env:Path;$Scripts"
    & (Join-Path $Scripts 'passport.exe') version
} finally {
    Pop-Location
    $env:PYTHONSAFEPATH = $SafePathBefore
    Remove-Item -LiteralPath $Work -Recurse -Force -ErrorAction SilentlyContinue
}
