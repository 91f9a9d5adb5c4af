# egs/utils/parse_options.sh: command-line options for recipe scripts (run.sh, local/*.sh).
#
# Source it after the script has given every option a default:
#
#     stage=0
#     stop_stage=100
#     nj=4
#     use_gpu=false
#     help_message="Usage: $0 [options] <data-dir>"
#     . utils/parse_options.sh
#     # "$@" now holds the positional arguments
#
# Rules:
#   --foo-bar VALUE and --foo-bar=VALUE set the shell variable foo_bar, which must already
#   be defined (an empty default counts); any other --option is an error ("unknown option")
#   and the script exits 1.
#   A variable whose default is true or false only takes true or false.
#   --help or -h prints $help_message (when set) and every option with its current value,
#   then exits 0. The options listed are the variables assigned at the top level of the
#   script ("name=value" at the start of a line) before it sources this file.
#   Parsing stops at "--" (which is dropped) or at the first argument that is not an
#   option; that argument and the ones after it stay in "$@".
# Works under `set -euo pipefail`. Helper names start with __po_ and are unset afterwards.

__po_die() {
  echo "${0##*/}: $*" >&2
  exit 1
}

# Print "  --foo-bar  (current: value)" for each option variable of the sourcing script.
__po_print_options() {
  local __po_file=$0 __po_line __po_name __po_seen=" "
  [ -f "$__po_file" ] && [ -r "$__po_file" ] || return 0
  echo "Options (default or current value in brackets):"
  while IFS= read -r __po_line || [ -n "$__po_line" ]; do
    # Stop where the script sources this file: later assignments are not options.
    case "$__po_line" in
      *parse_options.sh*) case "$__po_line" in \#*) ;; *) break ;; esac ;;
    esac
    if [[ $__po_line =~ ^([A-Za-z_][A-Za-z0-9_]*)= ]]; then
      __po_name=${BASH_REMATCH[1]}
      case "$__po_name" in help_message | __po_*) continue ;; esac
      case "$__po_seen" in *" $__po_name "*) continue ;; esac
      __po_seen="$__po_seen$__po_name "
      [ -n "${!__po_name+x}" ] || continue
      printf '  --%-24s [%s]\n' "${__po_name//_/-}" "${!__po_name}"
    fi
  done <"$__po_file"
}

while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help)
      if [ -n "${help_message:-}" ]; then
        printf '%s\n' "$help_message"
      fi
      __po_print_options
      exit 0
      ;;
    --)
      shift
      break
      ;;
    --?*=*)
      __po_opt=${1%%=*}
      __po_value=${1#*=}
      shift
      ;;
    --?*)
      __po_opt=$1
      [ $# -ge 2 ] || __po_die "option $__po_opt needs a value"
      __po_value=$2
      shift 2
      ;;
    *)
      break
      ;;
  esac
  __po_var=${__po_opt#--}
  __po_var=${__po_var//-/_}
  if ! [[ $__po_var =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || [ -z "${!__po_var+x}" ] \
    || [ "$__po_var" = help_message ] || [[ $__po_var == __po_* ]]; then
    __po_die "unknown option $__po_opt (try --help)"
  fi
  case "${!__po_var}" in
    true | false)
      case "$__po_value" in
        true | false) ;;
        *) __po_die "option $__po_opt takes true or false, not '$__po_value'" ;;
      esac
      ;;
  esac
  printf -v "$__po_var" '%s' "$__po_value"
done

unset -v __po_opt __po_value __po_var
unset -f __po_die __po_print_options
true
