#!/usr/bin/env bash
# Build libaccel.so, compile examples/c/copy.c against it and run it.
# Exits with the example's status (0 = "copy ok").
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo build -p accel
gcc -std=c11 -Wall -Wextra -Werror -I accel-uapi/include examples/c/copy.c \
	-L target/debug -laccel -Wl,-rpath,"$PWD/target/debug" -o target/debug/accel-c-copy

status=0
./target/debug/accel-c-copy || status=$?
exit "$status"
