#!/bin/sh
# Delete, rename, write a binary file, set an exec bit.
set -e
rm delete_me.txt
mv old_name.txt new_name.txt
printf '\000\001\002\377binary\000' > blob.bin
chmod +x run_me.sh
