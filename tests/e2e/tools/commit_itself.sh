#!/bin/sh
# A tool that commits its own work (twice), then leaves one more change uncommitted.
set -e
echo "first" > self1.txt
git add self1.txt
git commit -q -m "tool: add self1"
echo "second" > self2.txt
git add self2.txt
git commit -q -m "tool: add self2"
echo "uncommitted" > self3.txt
