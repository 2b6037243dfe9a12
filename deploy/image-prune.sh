#!/bin/sh
# Runs once, as root, in the Dockerfile's slim stage, after /opt/venv is copied in: keeps what the server
# runs and what a person needs to look around with `docker exec ... sh`, and deletes the rest
# (docs/deployment.md, "Size", has what each part saved):
#   1. shared libraries: the dynamic-linker closure (ldd) of the programs kept, the interpreter, its
#      extension modules and every library in /opt/venv stays, with glibc's own (its NSS and resolver
#      modules are loaded with dlopen, which ldd cannot see) and OpenSSL's provider folders; any other
#      library in the multiarch folder goes, and so does any library bundled in a wheel's *.libs/ folder
#      that no extension module in the venv links any more;
#   2. programs: a shell, coreutils-style tools, grep, sed, find, tar, ps, ldd and the interpreter stay;
#      everything else in /usr/bin and /usr/sbin goes (package and user management, util-linux, dpkg, gpgv,
#      the openssl command line);
#   3. a check: every ELF file left must find all its libraries, or the build fails.
# Works on Debian 12 bases (CI's stand-in, where Python is Debian's, and python:3.11-slim, where it is in
# /usr/local): it reads only the package lists of libc6, never the package tools it removes.
set -eu

KEEP_PROGRAMS="sh dash bash cat ls cp mv rm mkdir rmdir ln chmod touch env echo printf head tail wc sort uniq
cut tr tee sleep kill id whoami uname date du df stat readlink realpath dirname basename grep sed find xargs
tar gzip test [ true false pwd nproc timeout ldd getent ps python3 python3.11"
MULTIARCH=$(python3 -c "import sysconfig; print(sysconfig.get_config_var('MULTIARCH') or 'x86_64-linux-gnu')")
LIBDIR=/usr/lib/$MULTIARCH
DYNLOAD=$(python3 -c "import _json, os; print(os.path.dirname(_json.__file__))")
WORK=$(mktemp -d)

elf_files() {  # every shared object or executable under the folders given
  find "$@" -type f \( -name '*.so' -o -name '*.so.*' -o -perm -u+x \) 2>/dev/null | while read -r f; do
    [ "$(head -c 4 "$f" | tail -c 3)" = "ELF" ] && echo "$f"
  done
}

# ---------------------------------------------------------------------------------------- 1. libraries
{
  for p in $KEEP_PROGRAMS; do [ -e "/usr/bin/$p" ] && readlink -f "/usr/bin/$p"; done
  readlink -f "$(command -v python3)"
  elf_files "$DYNLOAD" /opt/venv /usr/local/lib "$LIBDIR/ossl-modules" "$LIBDIR/engines-3"
} | grep -v '/site-packages/[^/]*\.libs/' | sort -u > "$WORK/roots"  # a wheel's own libraries count only if linked
while read -r f; do ldd "$f" 2>/dev/null || true; done < "$WORK/roots" \
  | awk '/=>/ && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | xargs -r readlink -f | sort -u > "$WORK/needed"
# glibc's own files stay whatever ldd says (NSS, resolver, libgcc_s for thread cancellation are dlopen'ed).
cat /var/lib/dpkg/info/libc6:*.list /var/lib/dpkg/info/libc6.list /var/lib/dpkg/info/libgcc-s1:*.list \
  2>/dev/null | grep '\.so' | xargs -r readlink -f 2>/dev/null | sort -u >> "$WORK/needed" || true
sort -u -o "$WORK/needed" "$WORK/needed"
for f in "$LIBDIR"/*.so "$LIBDIR"/*.so.*; do
  [ -e "$f" ] || [ -L "$f" ] || continue
  target=$(readlink -f "$f")
  grep -qxF "$target" "$WORK/needed" || rm -f "$f"
done
# PAM's modules: nothing left loads them (no login, su or passwd; libpam itself is not in the closure).
rm -rf "$LIBDIR/security"
# Libraries a wheel bundles (auditwheel's *.libs/) that nothing in the venv links after the build's cuts.
for f in /opt/venv/lib/python3*/site-packages/*.libs/*; do
  [ -e "$f" ] || continue
  grep -qxF "$(readlink -f "$f")" "$WORK/needed" || rm -f "$f"
done

# ----------------------------------------------------------------------------------------- 2. programs (ld.so.cache refreshed first: ldconfig goes with them)
if command -v ldconfig >/dev/null 2>&1; then ldconfig; fi
for dir in /usr/bin /usr/sbin; do
  for f in "$dir"/*; do
    name=${f##*/}
    case " $(echo $KEEP_PROGRAMS) " in *" $name "*) continue ;; esac
    [ -d "$f" ] || rm -f "$f"
  done
done

# -------------------------------------------------------------------------------------------- 3. check
missing=$(elf_files /usr/bin /usr/sbin "$LIBDIR" "$DYNLOAD" /opt/venv /usr/local \
  | while read -r f; do ldd "$f" 2>/dev/null | grep 'not found' | sed "s|^|$f: |" || true; done)
rm -rf "$WORK"
if [ -n "$missing" ]; then
  echo "image-prune: libraries missing after the prune:" >&2
  echo "$missing" >&2
  exit 1
fi
/opt/venv/bin/python3 -B -c "import ssl, hashlib, zlib, lzma, bz2, ctypes, uuid, json, readline, numpy, onnxruntime, \
PIL.Image, grpc, tokenizers, boto3, uvloop, service.cli"
