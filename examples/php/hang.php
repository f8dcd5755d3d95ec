<?php
// Blocks like a request waiting on a slow database or API: no CPU used.
// ?s=SECONDS (default 60)
$s = isset($_GET['s']) ? (int) $_GET['s'] : 60;
sleep(max(0, min($s, 3600)));
echo "woke after $s s\n";
