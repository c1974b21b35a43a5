#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The house rules of STYLE.md that a machine can check. Prints each violation
# as "file:line: rule" and exits 1 if there is any.
#
#   memory     no raw malloc/calloc/realloc/free/strdup/memcpy/memcmp in src/
#              outside src/common/ (coffer_*, OPENSSL_* and PQfreemem are fine)
#   pkcs11     PKCS#11 calls (C_*) and p11-kit only in src/p11/
#   libpq      libpq calls (PQ*) only in src/store/
#   yaml       libyaml only in src/policy/ and src/server/config*
#   spdx       every .c and .h file starts with the SPDX line
#   format     clang-format with the repository's .clang-format
#
# Code checks look at code only: comments and string literals are blanked
# first, so prose that mentions free() is not a violation. The module rules
# cover src/ and include/; tests may use libpq and PKCS#11 directly to
# tamper with what the modules wrote.
set -euo pipefail

cd "$(dirname "$0")/.."

failed=0
# Prints "file:line: rule" for each "file:line:..." line of $1 and records the failure.
report() {
  if [[ -n "$1" ]]; then
    awk -F: -v rule="$2" '{ print $1 ":" $2 ": " rule }' <<<"$1"
    failed=1
  fi
}

mapfile -t sources < <(find src include tests -type f \( -name '*.c' -o -name '*.h' \) | sort)
if ((${#sources[@]} == 0)); then
  echo "check-rules: no sources found" >&2
  exit 1
fi

# Prints file:line:code with comments and string and character literals blanked.
strip() {
  awk '
    FNR == 1 { in_comment = 0 }
    {
      line = $0; out = ""; i = 1; n = length(line)
      while (i <= n) {
        c = substr(line, i, 1); d = substr(line, i, 2)
        if (in_comment) {
          if (d == "*/") { in_comment = 0; out = out "  "; i += 2 } else { out = out " "; i++ }
          continue
        }
        if (d == "/*") { in_comment = 1; out = out "  "; i += 2; continue }
        if (d == "//") { break }
        if (c == "\"" || c == "'"'"'") {
          q = c; out = out c; i++
          while (i <= n) {
            e = substr(line, i, 1)
            if (e == "\\") { out = out "  "; i += 2; continue }
            if (e == q) { out = out q; i++; break }
            out = out " "; i++
          }
          continue
        }
        out = out c; i++
      }
      print FILENAME ":" FNR ":" out
    }' "$@"
}

# Files under src/ and include/ whose path does not match the allowed prefix regex $1.
module_files() {
  local f
  for f in "${sources[@]}"; do
    case "$f" in
      src/* | include/*) ;;
      *) continue ;;
    esac
    if [[ ! "$f" =~ $1 ]]; then
      printf '%s\n' "$f"
    fi
  done
}

# $1 allowed-path regex, $2 code regex, $3 rule text
check_code() {
  local files
  mapfile -t files < <(module_files "$1")
  ((${#files[@]} == 0)) && return 0
  report "$(strip "${files[@]}" | grep -E "^[^:]+:[0-9]+:.*$2" || true)" "$3"
}

# $1 allowed-path regex, $2 include regex, $3 rule text
check_include() {
  local files
  mapfile -t files < <(module_files "$1")
  ((${#files[@]} == 0)) && return 0
  report "$(grep -HnE "^[[:space:]]*#[[:space:]]*include[[:space:]]*[<\"]$2" "${files[@]}" || true)" "$3"
}

NB='(^|[^A-Za-z0-9_])' # start of an identifier
NBM='(^|[^A-Za-z0-9_.>])' # start of an identifier that is not a struct member

check_code '^src/common/|^include/' \
  "${NBM}(malloc|calloc|realloc|reallocarray|free|strdup|strndup|memcpy|memcmp)[[:space:]]*\\(" \
  "memory: use coffer_calloc/coffer_free/coffer_strdup/coffer_memcpy/coffer_mem_equal (coffer/mem.h)"
check_code '^src/p11/' "${NB}C_[A-Z][A-Za-z0-9_]*[[:space:]]*\\(" \
  "pkcs11: PKCS#11 calls only in src/p11/"
check_code '^src/p11/' "${NB}p11_kit_[A-Za-z0-9_]*[[:space:]]*\\(" \
  "pkcs11: p11-kit calls only in src/p11/"
check_include '^src/p11/' '(p11-kit/|pkcs11)' "pkcs11: PKCS#11 headers only in src/p11/"
check_code '^src/store/' "${NB}PQ[A-Za-z0-9_]*[[:space:]]*\\(" "libpq: libpq calls only in src/store/"
check_include '^src/store/' 'libpq-fe\.h' "libpq: libpq-fe.h only in src/store/"
check_code '^src/policy/|^src/server/config' "${NB}yaml_[A-Za-z0-9_]*[[:space:]]*\\(" \
  "yaml: libyaml only in src/policy/ and src/server/config*"
check_include '^src/policy/|^src/server/config' 'yaml\.h' \
  "yaml: yaml.h only in src/policy/ and src/server/config*"

spdx='/* SPDX-License-Identifier: Apache-2.0 */'
for f in "${sources[@]}"; do
  if [[ "$(head -n 1 "$f")" != "$spdx" ]]; then
    printf '%s:1: spdx: the first line must be %s\n' "$f" "$spdx"
    failed=1
  fi
done

# The newest clang-format installed: the configuration may use keys an older one rejects.
cf=""
for c in $(compgen -c clang-format- | grep -E '^clang-format-[0-9]+$' | sort -t- -k3 -n -r | uniq) clang-format; do
  if command -v "$c" >/dev/null 2>&1; then
    cf=$c
    break
  fi
done
if [[ -z "$cf" ]]; then
  echo "check-rules: clang-format is not installed (scripts/install-deps.sh installs it)" >&2
  exit 1
fi
if ! "$cf" --style=file --dump-config "${sources[0]}" >/dev/null 2>&1; then
  echo "check-rules: $cf cannot read .clang-format:" >&2
  "$cf" --style=file --dump-config "${sources[0]}" 2>&1 >/dev/null | head -n 3 >&2
  exit 1
fi
while IFS= read -r line; do
  # "file:line:col: error: code should be clang-formatted [-Wclang-format-violations]"
  if [[ "$line" =~ ^([^:]+):([0-9]+):[0-9]+:\ (error|warning): ]]; then
    printf '%s:%s: format: differs from clang-format (run %s -i %s)\n' \
      "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" "$cf" "${BASH_REMATCH[1]}"
    failed=1
  fi
done < <("$cf" --style=file --dry-run --Werror "${sources[@]}" 2>&1 || true)

if ((failed)); then
  echo "check-rules: violations found" >&2
  exit 1
fi
echo "check-rules: ok (${#sources[@]} files)"
