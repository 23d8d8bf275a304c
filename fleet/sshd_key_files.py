"""Which files besides ``~/.ssh/authorized_keys`` the host's sshd reads keys from for a user.

sshd reads every file its ``AuthorizedKeysFile`` names, and its built-in default (no such line in
sshd_config, as on Debian, Ubuntu and devcloud's hosts) is ``.ssh/authorized_keys
.ssh/authorized_keys2``. A line the user copied into one of the others (a direct grant's line, a
line of a grant whose request ended, a plain key) would outlive every rewrite of authorized_keys,
so ``fleet.ssh_keys.write_user_keys`` removes, as the user, every other one of them under the
user's home. ``sshd_other_key_files`` (bash, in the create and removal scripts) lists them: the
list ``sshd -T`` prints for the user (with ``-C user=...,host=localhost,addr=127.0.0.1``, as the
SSM agent and the recording proxy reach sshd, for ``Match`` blocks; and without, for the global
value) of the default configuration and of each sshd listening as root with its own ``-f``;
``.ssh/authorized_keys2`` always (sshd's built-in default, and what is read when ``sshd -T``
fails). Tokens as sshd expands them (``%%``, ``%h``, ``%u``, ``%U``; a path with another token
is one sshd cannot read), a relative path from the home. A file outside the home (root's, such as
``/etc/ssh/authorized_keys/%u``) or with a ``..`` in it is never touched: the script says so on
stderr. An ``AuthorizedKeysCommand`` is the host's own and out of Passport's reach: said too.
"""

from __future__ import annotations

# What the script prints for a file sshd reads that Passport leaves as it is, then the path.
KEY_FILE_LEFT = "passport: sshd here also reads keys from a file outside the user's home, left as it is:"
KEYS_COMMAND_SAID = "passport: sshd here has an AuthorizedKeysCommand, which Passport does not change"

LINUX_SSHD_KEY_FILES = r"""
# sshd's AuthorizedKeysFile values for the user, one a line, from each configuration sshd runs
# with: the default one, and the -f of each sshd process of root's (listeners; sessions rewrite
# their command line and name none). Said when there is an AuthorizedKeysCommand. sshd -T is
# bounded in time and its errors dropped: nothing of a configuration but these values is said.
sshd_run_by_root() {
  local key real effective rest
  while IFS=$'\t' read -r key real effective rest; do
    if [ "$key" = Uid: ]; then [ "$real" = 0 ] && [ "$effective" = 0 ]; return; fi
  done < "$1/status"
  return 1
} 2>/dev/null
sshd_key_file_specs() {
  local tool binary pid config configs=("") said=no line word spec words=() args=()
  tool=$(command -v sshd 2>/dev/null || echo /usr/sbin/sshd)
  binary=$(readlink -f -- "$tool" 2>/dev/null || echo "$tool")
  for pid in /proc/[0-9]*; do
    # Root's, as its real and effective uids say (a non-dumpable process's /proc entry is root's,
    # and sshd makes itself non-dumpable, so a user's own sshd would look root's by its owner).
    sshd_run_by_root "$pid" || continue
    [ "$(readlink -- "$pid/exe" 2>/dev/null)" = "$binary" ] || continue
    line=$(tr '\0' ' ' < "$pid/cmdline" 2>/dev/null) || continue
    [[ "$line" =~ (^|\ )-f\ ?([^ ]+) ]] || continue
    config=${BASH_REMATCH[2]}
    case " ${configs[*]} " in *" $config "*) ;; *) configs+=("$config") ;; esac
  done
  echo ".ssh/authorized_keys2"
  for config in "${configs[@]}"; do
    for spec in "" "user=$user,host=localhost,addr=127.0.0.1"; do
      args=(-T)
      if [ -n "$config" ]; then args+=(-f "$config"); fi
      if [ -n "$spec" ]; then args+=(-C "$spec"); fi
      if ! line=$(timeout 10 "$tool" "${args[@]}" </dev/null 2>/dev/null 9>&-); then
        echo "passport: could not read sshd's configuration ${config:-(the default)}: taking sshd's" \
          "built-in AuthorizedKeysFile" >&2
        continue
      fi
      while IFS= read -r word; do
        case "$word" in
          "authorizedkeysfile "*)
            read -ra words <<< "${word#authorizedkeysfile }"
            printf '%s\n' ${words[@]+"${words[@]}"} ;;
          "authorizedkeyscommand "*) [ "${word#authorizedkeyscommand }" = none ] || said=yes ;;
        esac
      done <<< "$line"
    done
  done
  if [ "$said" = yes ]; then echo "__KEYS_COMMAND__" >&2; fi
  return 0
}
# One AuthorizedKeysFile value as sshd expands it for the user: tokens, then a relative path from
# the home. Fails for a token sshd does not know (sshd reads nothing there) and for "none".
sshd_key_file_path() {
  local spec=$1 out="" c
  [ "$spec" != none ] || return 1
  while [ -n "$spec" ]; do
    c=${spec:0:1}
    spec=${spec:1}
    if [ "$c" = % ]; then
      c=${spec:0:1}
      spec=${spec:1}
      case "$c" in %) out+=% ;; h) out+=$home ;; u) out+=$user ;; U) out+=$(id -u "$user") ;; *) return 1 ;; esac
    else
      out+=$c
    fi
  done
  if [ "${out:0:1}" = / ]; then printf '%s\n' "$out"; else printf '%s/%s\n' "$home" "$out"; fi
}
# The files besides $home/.ssh/authorized_keys that sshd reads keys from for the user and that lie
# under its home, one a line, spelled without "." or empty parts; each one outside it is said.
sshd_other_key_files() {
  local spec path part parts kept inside
  [ "${home:0:1}" = / ] && [ "${#home}" -gt 1 ] || return 0
  sshd_key_file_specs | sort -u | while IFS= read -r spec; do
    path=$(sshd_key_file_path "$spec") || continue
    kept=""
    inside=no
    case "$path" in
      "${home%/}/"*)
        inside=yes
        IFS=/ read -ra parts <<< "${path#"${home%/}"/}"
        for part in ${parts[@]+"${parts[@]}"}; do
          case "$part" in '' | .) ;; ..) inside=no; break ;; *) kept+=/$part ;; esac
        done ;;
    esac
    if [ "$inside" = no ]; then
      printf '%s %s\n' "__LEFT__" "$path" >&2
    elif [ -n "$kept" ] && [ "${kept#/}" != .ssh/authorized_keys ]; then
      printf '%s\n' "${home%/}$kept"
    fi
  done | sort -u
}
""".replace("__LEFT__", KEY_FILE_LEFT).replace("__KEYS_COMMAND__", KEYS_COMMAND_SAID)
