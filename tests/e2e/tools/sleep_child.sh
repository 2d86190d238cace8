#!/bin/sh
# Start a child that would outlive us, record its pid in $1, then sleep $2 seconds.
sleep 300 &
echo $! > "$1"
echo "started child $!"
sleep "$2"
echo "woke up" > woke.txt
