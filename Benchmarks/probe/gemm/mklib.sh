#!/bin/sh
# Static library of the kernel sources at -O2 (as SwiftPM builds them): mklib.sh SRC OUT
set -e
S=$1; O=$2; mkdir -p $O/obj
for f in $S/*.c; do clang -O2 -fPIC -I$S -I$S/include -c $f -o $O/obj/$(basename $f .c).o & done; wait
rm -f $O/lib.a; ar rcs $O/lib.a $O/obj/*.o
