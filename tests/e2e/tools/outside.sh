#!/bin/sh
# Change one file in scope and one outside it.
echo "ok" >> src/in_scope.txt
echo "bad" >> docs/outside.txt
