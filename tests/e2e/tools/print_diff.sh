#!/bin/sh
# A tool that changes nothing itself and prints a unified diff on stdout.
cat <<'DIFF'
diff --git a/README.md b/README.md
--- a/README.md
+++ b/README.md
@@ -1 +1,2 @@
 hello
+from a diff
diff --git a/new.txt b/new.txt
new file mode 100644
--- /dev/null
+++ b/new.txt
@@ -0,0 +1 @@
+created by a diff
DIFF
