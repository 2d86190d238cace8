#!/bin/sh
# A tool that prints a mailbox patch (as `git format-patch --stdout` does) and changes nothing.
cat <<'MBOX'
From 1111111111111111111111111111111111111111 Mon Sep 17 00:00:00 2001
From: Patch Author <patch@example.com>
Date: Tue, 24 Nov 2026 10:00:00 +0000
Subject: [PATCH] add a mailed file

Sent by mail.
---
 mailed.txt | 1 +
 1 file changed, 1 insertion(+)
 create mode 100644 mailed.txt

diff --git a/mailed.txt b/mailed.txt
new file mode 100644
index 0000000..1111111
--- /dev/null
+++ b/mailed.txt
@@ -0,0 +1 @@
+from a mailbox
-- 
2.39.5

MBOX
